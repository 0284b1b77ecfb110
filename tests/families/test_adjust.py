"""ADJUST (models/mdlm/adjust.py, adjust_objective.py): the spec's D4 loss tests, the trajectory writer, and the D3
learning claim by exact enumeration. Training in the generic trainer on a frozen MDLM loaded with
checkpoint.init_from (the base bit-identical afterwards), resume, accumulation and decoding: tests/suites/test_conformance.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from models.mdlm.adjust import AdjustConfig, AdjustedMdlm, depth_probabilities
from models.mdlm.adjust_objective import AdjustObjective, forward_kl, states_from_order
from models.modernbert import ModernBertConfig

MASK, LIMIT = 7, 5
CFG = ModernBertConfig(vocab_size=8, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                       global_attn_every_n_layers=2, local_attention=4, initializer_range=0.5)


def test_loss_is_forward_kl_and_zero_at_equality():
  p = jnp.log(jnp.asarray([[[0.7, 0.2, 0.1, 0.0]]]))
  q = jnp.log(jnp.asarray([[[0.2, 0.3, 0.4, 0.1]]]))
  np.testing.assert_allclose(forward_kl(p, q), [[stats.entropy([0.7, 0.2, 0.1, 0.0], [0.2, 0.3, 0.4, 0.1])]],
                             rtol=1e-6)
  reverse = stats.entropy([0.2, 0.3, 0.4, 0.1], [0.7, 0.2, 0.1, 1e-30])
  assert abs(float(forward_kl(p, q)[0, 0]) - reverse) > 0.5          # KL(p||q), not KL(q||p)
  assert float(forward_kl(p, p)[0, 0]) == 0.0
  assert np.isfinite(float(forward_kl(p, q)[0, 0]))                   # p = 0 where q > 0 is fine


def test_targets_are_the_positions_still_masked_at_depth_d():
  n = 4096
  tokens = jnp.asarray([[0, 1, 2, 3, 4, 1]] * n)
  order = jnp.asarray([[-1, 3, 0, 4, 1, 2]] * n)       # position 0 given; then 2, 4, 5, 1, 3
  batch = {"tokens": tokens, "order": order, "segment_ids": jnp.ones_like(tokens),
           "positions": jnp.broadcast_to(jnp.arange(6), (n, 6))}
  b = AdjustObjective(mask_id=MASK, max_depth=3).prepare(batch, jax.random.PRNGKey(0))
  states, depth, w = np.asarray(b["states"]), np.asarray(b["depth"]), np.asarray(b["weights"])
  for r in range(256):
    target = states[r, depth[r]]
    np.testing.assert_array_equal(w[r] > 0, target == MASK)
    assert (states[r, depth[r]] == MASK).sum() == (states[r, 0] == MASK).sum() - depth[r]   # D reveals
  np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
  # depth law: softmax([1, .5, .25]) = .481 / .292 / .227 (not the normalised weights .571 / .286 / .143)
  np.testing.assert_allclose(depth_probabilities(3), [0.48102, 0.29176, 0.22722], atol=1e-5)
  counts = np.bincount(depth, minlength=4)[1:]
  assert stats.chisquare(counts, n * np.asarray(depth_probabilities(3))).pvalue > 1e-3
  assert stats.chisquare(counts, n * np.array([4, 2, 1]) / 7).pvalue < 1e-3


def test_states_from_order():
  s = states_from_order(jnp.asarray([[5, 6, 7]]), jnp.asarray([[1, -1, 0]]), jnp.asarray([[0, 1, 2]]), 9)
  np.testing.assert_array_equal(s[0], [[9, 6, 9], [9, 6, 7], [5, 6, 7]])


@pytest.fixture(scope="module")
def adjusted():
  model = AdjustedMdlm(CFG, mask_id=MASK, vocab_limit=LIMIT, adjust_cfg=AdjustConfig(num_heads=2,
                                                                                      intermediate_size=16))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
  return model, params


def test_adjust_logits_have_the_bans_reapplied(adjusted):
  model, params = adjusted
  x = jnp.asarray([[MASK, 2, MASK, 1]])
  logits, h = model.apply({"params": params}, x, method="base_step")
  logits2, h2 = model.apply({"params": params}, x, h, method="adjust_step")
  lp = np.asarray(jax.nn.log_softmax(logits2, -1))[0]
  assert np.all(np.isneginf(lp[:, MASK])) and np.all(np.isneginf(lp[:, LIMIT:]))
  np.testing.assert_allclose(lp[1, 2], 0.0, atol=1e-6)
  assert not np.allclose(np.asarray(logits2)[0, [0, 2]], np.asarray(logits)[0, [0, 2]])   # it does adjust
  assert set(params) == {"model", "head", "decoder_bias", "adjust"}


def test_base_gets_zero_gradient(adjusted):
  model, params = adjusted
  tokens = jnp.asarray([[0, 1, 2, 3]] * 4)
  batch = {"tokens": tokens, "order": jnp.asarray([[2, 0, 3, 1]] * 4), "segment_ids": jnp.ones_like(tokens),
           "positions": jnp.broadcast_to(jnp.arange(4), (4, 4))}
  obj = AdjustObjective(mask_id=MASK, max_depth=1)           # one unroll keeps the compile small
  b = obj.prepare(batch, jax.random.PRNGKey(1))
  grads = jax.jit(jax.grad(lambda p: obj.loss(model.apply, p, b, jax.random.PRNGKey(2))[0]))(params)
  base_norm = sum(float(jnp.abs(g).sum()) for k, v in grads.items() if k != "adjust" for g in jax.tree.leaves(v))
  adjust_norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["adjust"]))
  assert base_norm == 0.0 and adjust_norm > 0.0


def test_trajectory_writer_reveals_the_lowest_entropy_position_each_call(adjusted, capsys):
  from decode.trajectories import sequential_trajectories
  model, params = adjusted
  base = lambda x, s: model.apply({"params": params}, x, s, method="base_step")[0]   # noqa: E731
  start = np.array([MASK, 3, MASK, MASK, MASK], np.int32)
  out = sequential_trajectories(base, start, np.ones(5, np.int32), num=6, batch=4, seed=0, mask_id=MASK,
                                vocab_limit=LIMIT)
  assert out["tokens"].shape == (6, 5) and np.all(out["order"][:, 1] == -1)
  progress = capsys.readouterr().err        # long trajectory jobs show a bar with an ETA
  assert "trajectories: 100%" in progress and "6/6" in progress, progress
  for r in range(6):
    assert sorted(out["order"][r, [0, 2, 3, 4]]) == [0, 1, 2, 3]       # one position per call
    for j in range(4):
      state = np.where(out["order"][r] < j, out["tokens"][r], MASK)
      state[1] = 3
      logits = model.apply({"params": params}, jnp.asarray(state)[None], method="base_step")[0]
      ids = np.arange(logits.shape[-1])
      logits = jnp.where((ids == MASK) | (ids >= LIMIT), -jnp.inf, logits)
      probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float64) if jax.config.jax_enable_x64 else logits, -1))[0]
      score = np.where(state == MASK, stats.entropy(probs, axis=-1), np.inf)   # scipy, not the sampler's rule
      assert int(np.flatnonzero(out["order"][r] == j)[0]) == int(np.argmin(score))


def test_the_adjust_block_is_a_residual_on_h(adjusted):
  """h_d = RMSNorm_post(u) + h_{d-1}: with the block's output scale zeroed, an ADJUST call returns h unchanged and
  so the base head's logits on h (without the residual it would return zeros)."""
  model, params = adjusted
  x = jnp.asarray([[MASK, 2, MASK, 1]])
  logits, h = model.apply({"params": params}, x, method="base_step")
  silent = jax.tree.map(lambda a: a, params)
  silent["adjust"]["norm_post"] = jax.tree.map(jnp.zeros_like, params["adjust"]["norm_post"])
  logits2, h2 = model.apply({"params": silent}, x, h, method="adjust_step")
  np.testing.assert_array_equal(h2, h)
  np.testing.assert_array_equal(logits2, logits)
  _, h3 = model.apply({"params": params}, x, h, method="adjust_step")
  assert float(jnp.abs(h3 - h).max()) > 1e-3          # the block does contribute with its real scale


def test_objective_trains_adjust_on_the_states_of_its_depth(adjusted):
  """The loss equals a reference written out call by call: h_0 from the base on s_t, ADJUST calls on
  s_{t+1} .. s_{t+D} (each on the state after its reveal), q from the call at depth D, p from the base on
  s_{t+D}, forward KL averaged over the positions still masked there. Feeding s_{t+d-1} to the call at depth d,
  or scoring depth D - 1, changes the value."""
  model, params = adjusted
  n = 6
  tokens = jnp.asarray([[0, 1, 2, 3, 4, 1]] * n)
  order = jnp.asarray([[-1, 3, 0, 4, 1, 2]] * n)
  batch = {"tokens": tokens, "order": order, "segment_ids": jnp.ones_like(tokens),
           "positions": jnp.broadcast_to(jnp.arange(6), (n, 6))}
  obj = AdjustObjective(mask_id=MASK, max_depth=3)
  b = obj.prepare(batch, jax.random.PRNGKey(4))
  loss = float(jax.jit(lambda p: obj.loss(model.apply, p, b, jax.random.PRNGKey(0))[0])(params))
  depth, start = np.asarray(b["depth"]), np.asarray(b["states"])[:, 0]
  assert len(set(depth.tolist())) > 1                  # several depths in the batch

  def state(r, j):    # s_j of row r: positions revealed before call j (order < j), by hand
    o = np.asarray(order[r])
    return np.where(o < j, np.asarray(tokens[r]), MASK)

  def reference(shift=0, score_shift=0):
    total, count = 0.0, 0.0
    for r in range(n):
      t = next(j for j in range(7) if np.array_equal(state(r, j), start[r]))   # s_t: the batch's first state
      D = int(depth[r])
      apply = lambda x, *a, m: model.apply({"params": params}, jnp.asarray(x)[None], *a, method=m)  # noqa: E731
      _, h = apply(state(r, t), m="base_step")
      qs = []
      for d in range(1, D + 1):
        logits, h = apply(state(r, t + d - shift), h, m="adjust_step")
        qs.append(jax.nn.log_softmax(logits, -1)[0])
      logq = qs[D - 1 - score_shift]
      target = state(r, t + D)
      logp = jax.nn.log_softmax(apply(target, m="base_step")[0], -1)[0]
      masked = target == MASK
      kl = np.asarray(forward_kl(logp[None], logq[None]))[0]
      total += float(kl[masked].sum())
      count += float(masked.sum())
    return total / count
  assert abs(loss - reference()) < 1e-5 * max(1.0, abs(loss))
  assert abs(reference(shift=1) - loss) > 1e-3
  if (depth > 1).any():
    assert abs(reference(score_shift=1) - loss) > 1e-3


def _fit(loss_fn, params, steps, lr, seed):
  """Adam on loss_fn(params, key) -> (loss, metrics); the last step's metrics."""
  import optax
  tx = optax.adam(lr)

  @jax.jit
  def step(params, opt, key):
    (_, m), g = jax.value_and_grad(loss_fn, has_aux=True)(params, key)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt, m

  opt = tx.init(params)
  for i in range(steps):
    params, opt, m = step(params, opt, jax.random.fold_in(jax.random.PRNGKey(seed), i))
  return params, jax.device_get(m)


def test_d3_trained_adjust_sampler_is_far_closer_to_sequential_than_parallel_decoding():
  """Spec D3 at the cheapest size that can fail: an MDLM base (2 layers, d = 32) trained on the copy fixture
  (V = 3, L = 3), then ADJUST trained on the base's own one-token-per-call trajectories. Positions are revealed in
  uniformly random order (no ranking, so nothing hinges on the rounding of tied scores: with identical inputs a
  RoPE model gives symmetric positions equal scores). By exact enumeration (decode/diffusion_exact.py), 2 tokens
  per base call: the ADJUST sampler's TV to the sequential sampler is under a fifth of parallel decoding's, while
  the untrained layer is no better than parallel (the control: the bar is not met for free); ADJUST's training KL
  is under a fifth of the naive step-start logits' (`naive_kl`)."""
  from decode import diffusion_exact as ex
  from decode.trajectories import sequential_trajectories
  from models.mdlm import MaskedDiffusionLM, MdlmObjective
  V, L = 3, 3
  P = ex.copy_fixture(V, L)
  start = np.full(L, V)
  rows = np.array(list(np.ndindex(*P.shape)), np.int32)
  cfg = ModernBertConfig(vocab_size=V + 1, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                         global_attn_every_n_layers=1)
  base_model = MaskedDiffusionLM(cfg, mask_id=V, vocab_limit=V)
  mdlm = MdlmObjective(mask_id=V, special_ids=())
  probs, seqs, B = jnp.asarray(P.reshape(-1)), jnp.asarray(rows), 128

  def base_loss(params, key):
    r_data, r_prep = jax.random.split(key)
    tokens = seqs[jax.random.choice(r_data, len(rows), (B,), p=probs)]
    batch = mdlm.prepare({"tokens": tokens, "segment_ids": jnp.ones_like(tokens),
                          "positions": jnp.broadcast_to(jnp.arange(L), (B, L))}, r_prep)
    return mdlm.loss(base_model.apply, params, batch, r_prep)
  base_params = base_model.init(jax.random.PRNGKey(0), jnp.zeros((1, L), jnp.int32))["params"]
  base_params, _ = _fit(base_loss, base_params, 300, 3e-3, 1)

  model = AdjustedMdlm(cfg, mask_id=V, vocab_limit=V, adjust_cfg=AdjustConfig(num_heads=2, intermediate_size=64,
                                                                              max_depth=2))
  params = {**model.init(jax.random.PRNGKey(2), jnp.zeros((1, L), jnp.int32))["params"], **base_params}
  denoise = lambda x, s: model.apply({"params": params}, x, s, method="base_step")[0]   # noqa: E731
  traj = {k: jnp.asarray(v) for k, v in sequential_trajectories(
      denoise, start.astype(np.int32), np.ones(L, np.int32), 1024, 256, 3, mask_id=V, vocab_limit=V,
      rule="random").items()}
  objective = AdjustObjective(mask_id=V, max_depth=2)

  def adjust_loss(adjust, key):
    r_rows, r_prep = jax.random.split(key)
    i = jax.random.randint(r_rows, (B,), 0, 1024)
    batch = objective.prepare({**{k: v[i] for k, v in traj.items()},
                               "positions": jnp.broadcast_to(jnp.arange(L), (B, L))}, r_prep)
    return objective.loss(model.apply, {**params, "adjust": adjust}, batch, r_prep)
  trained, m = _fit(adjust_loss, params["adjust"], 200, 3e-3, 4)
  assert m["loss"] < 0.2 * m["naive_kl"], m

  def adjust_tv(adjust_params):   # the ADJUST sampler's exact law at 2 tokens per base call, against sequential
    v = {"params": {**params, "adjust": adjust_params}}

    def first(x):
      logits, h = model.apply(v, jnp.asarray(x)[None], method="base_step")
      return np.asarray(logits[0], np.float64), h

    def then(x, h, _):
      logits, h = model.apply(v, jnp.asarray(x)[None], h, method="adjust_step")
      return np.asarray(logits[0], np.float64), h
    return ex.tv(ex.adjust_law(first, then, start, mask_id=V, vocab=V, k=2, rule="random"), seq)

  base = lambda x: np.asarray(denoise(jnp.asarray(x)[None], jnp.ones((1, L), jnp.int32))[0], np.float64)  # noqa
  seq = ex.unmask_law(base, start, mask_id=V, vocab=V, k=1, rule="random")
  par_tv = ex.tv(ex.unmask_law(base, start, mask_id=V, vocab=V, k=2, rule="random"), seq)
  adj_tv, untrained_tv = adjust_tv(trained), adjust_tv(params["adjust"])
  assert par_tv > 0.1, par_tv                                     # parallel decoding loses the coupling
  assert untrained_tv > 0.5 * par_tv, (untrained_tv, par_tv)      # control: an untrained layer does not pass
  assert adj_tv < 0.2 * par_tv, (adj_tv, par_tv)


def test_adjust_declares_its_base_and_refuses_to_start_without_it():
  """Family.base: ADJUST trains on a frozen MDLM, so a config without checkpoint.init_from is one line naming it
  (checked by the trainer before anything compiles; the family does not read checkpoint.* itself)."""
  from configs import adjust
  from train.errors import ConfigError
  from train.experiment import build_experiment
  c = adjust.get_config("tiny")
  c.unlock()
  c.checkpoint.init_from = ""
  c.lock()
  with pytest.raises(ConfigError, match=r"^model.name='adjust' trains on a frozen MDLM: .*set "
                                        r"--config.checkpoint.init_from=<it>$"):
    build_experiment(c)
