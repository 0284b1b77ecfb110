"""ADJUST (models/mdlm/adjust.py, adjust_objective.py): the spec's D4 loss tests, the trajectory writer, and
training in the generic trainer on a frozen MDLM loaded with checkpoint.init_from."""
import os

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


def test_trajectory_writer_reveals_the_lowest_entropy_position_each_call(adjusted):
  from decode.trajectories import sequential_trajectories
  model, params = adjusted
  base = lambda x, s: model.apply({"params": params}, x, s, method="base_step")[0]   # noqa: E731
  start = np.array([MASK, 3, MASK, MASK, MASK], np.int32)
  out = sequential_trajectories(base, start, np.ones(5, np.int32), num=6, batch=4, seed=0, mask_id=MASK,
                                vocab_limit=LIMIT)
  assert out["tokens"].shape == (6, 5) and np.all(out["order"][:, 1] == -1)
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


def test_trains_on_a_frozen_mdlm_in_the_generic_trainer(tiny_mdlm_run, tmp_path, capsys):
  from configs import adjust
  from train.checkpoint import Checkpointer
  from train.loop import load_trained, run, train
  base_config, base_dir, _ = tiny_mdlm_run
  traj = str(tmp_path / "trajectories.npz")
  run(base_config, base_dir, mode="decode",                  # --mode=decode of the base writes the trajectories
      overrides={"decode.trajectories": 40, "decode.trajectory_file": traj})
  assert f"wrote 40 trajectories of 32 tokens to {traj}" in capsys.readouterr().out
  c = adjust.get_config("tiny")
  c.unlock()
  c.checkpoint.init_from, c.objective.trajectory_file = base_dir, traj
  c.lock()
  adj_dir = str(tmp_path / "adjust")
  final = train(c, adj_dir)
  assert np.isfinite(final["loss"]) and final["naive_kl"] > 0
  _, _, base_params = load_trained(base_config, base_dir)
  exp, step, params = load_trained(c, adj_dir)
  for path, leaf in jax.tree_util.tree_leaves_with_path(base_params):   # every base weight bit-identical
    got = params
    for k in path:
      got = got[k.key]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(leaf))
  assert Checkpointer(os.path.join(adj_dir, "checkpoints"), read_only=True).latest_step() == 6
  (text,) = exp.family.decode(params, ["import [MASK][MASK][MASK]"])
  assert text.startswith("import ") and "[MASK]" not in text


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
