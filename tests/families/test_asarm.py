"""Any-subset AR model and ASSD: exactness against enumeration, NFE bound, Lemma 1, no mask leaks, the objective
equals the brute-force chain NLL."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decode.assd_exact import build, exactness
from decode.assd import assd_sample, joint_log_prob, sequential_sample
from decode.assd_cached import _call, _pending, _prefill, assd_sample_cached, sequential_sample_cached
from models.asarm import AnySubsetObjective, banned_log_probs, canonical_ranks


@pytest.mark.parametrize("vocab, length, prompt, k, temperature, seed, cache", [
    pytest.param(4, 6, 2, 3, 1.0, 0, False, marks=pytest.mark.slow),
    pytest.param(3, 7, 2, 2, 1.0, 1, False, marks=pytest.mark.slow), (3, 7, 2, 2, 1.0, 1, True),
    (4, 6, 1, 5, 0.7, 2, False), pytest.param(4, 6, 1, 5, 0.7, 2, True, marks=pytest.mark.slow),
    (3, 6, 3, 4, 1.3, 3, False), pytest.param(3, 6, 3, 4, 1.3, 3, True, marks=pytest.mark.slow)])
def test_assd_samples_the_exact_joint_and_naive_parallel_does_not(vocab, length, prompt, k, temperature, seed, cache):
  """`cache`: the cached decoder (decode/assd_cached.py); the uncached one re-encodes the row at every call."""
  r = exactness(vocab, length, prompt, k, samples=20000, seed=seed, temperature=temperature, cache=cache)
  assert abs(r["target_mass"] - 1.0) < 1e-5          # the enumerated chain is a distribution
  assert r["assd_p"] > 1e-3 and r["assd_tv"] < 0.05, r
  assert r["parallel_p"] < 1e-6 and r["parallel_tv"] > 0.1, r
  assert r["max_nfe"] <= length - prompt
  if k == 2:
    assert r["nfe_per_token"] == 1.0                   # k = 2: every round writes exactly 2 tokens for 2 calls


@pytest.mark.parametrize("cache", [False, True])
def test_assd_is_exact_with_a_vocabulary_limit_and_padding(cache):
  """The path every real decode takes: embedding rows above the vocabulary banned, rows padded to a batch length."""
  r = exactness(4, 6, 2, 3, samples=20000, seed=4, vocab_limit=3, pad=2, cache=cache)
  assert abs(r["target_mass"] - 1.0) < 1e-5          # the limited, padded chain is still a distribution
  assert r["assd_p"] > 1e-3 and r["assd_tv"] < 0.05, r
  assert r["parallel_p"] < 1e-6 and r["parallel_tv"] > 0.1, r


@pytest.fixture(scope="module")
def tiny():
  model, params = build(vocab=5, seed=0, init_scale=0.6)
  return model, params


def _random_rows(rng, B, N, vocab):
  visible = np.zeros((B, N), bool)
  m = rng.integers(0, N, B)            # 0 .. N-1 visible: at least one token to generate
  for b in range(B):
    visible[b, rng.choice(N, m[b], replace=False)] = True
  tokens = rng.integers(0, vocab, (B, N)).astype(np.int32)
  return jnp.asarray(tokens), canonical_ranks(jnp.asarray(visible)), jnp.asarray(m, jnp.int32), visible


@pytest.mark.parametrize("k", [1, 5] + [pytest.param(k, marks=pytest.mark.slow) for k in (2, 3, 8)])
def test_nfe_never_exceeds_generated_tokens(k):
  """Property over 3 random models x 128 random rows (prompts, orders, sizes of the hidden set)."""
  N = 9
  for model_seed in range(3):   # same shapes: one compilation serves every model
    model, params = build(vocab=5, seed=model_seed, init_scale=0.3 + 0.3 * model_seed)
    rng = np.random.default_rng(100 * k + model_seed)
    tokens, rank, m, visible = _random_rows(rng, 128, N, 5)
    out, nfe, rounds = assd_sample(model.apply, params, tokens, rank, m, jax.random.PRNGKey(k), k=k, mask_id=5)
    out, nfe, rounds, m_np = map(np.asarray, (out, nfe, rounds, m))
    generated = N - m_np
    assert (nfe <= generated).all() if k > 1 else (nfe == generated).all()
    if k == 2:
      assert (nfe == generated).all()
    if k >= 2:   # every round writes >= min(2, remaining) tokens
      assert (rounds <= (generated + 1) // 2).all()
    else:        # k = 1 degenerates to one token (and one call) per round
      assert (rounds == generated).all()
    assert (out != 5).all()                                             # no mask token left or sampled
    np.testing.assert_array_equal(out[visible], np.asarray(tokens)[visible])   # prompt unchanged
    if k > 2:
      assert nfe.mean() < generated.mean()                             # drafts do get accepted


@pytest.mark.parametrize("cache", [False, True])
def test_sequential_decoding_uses_one_call_per_token_and_matches_enumeration(tiny, cache):
  model, params = tiny
  S = 8000
  visible = np.array([True, False, False, False])
  rank = canonical_ranks(jnp.asarray(visible))
  prompt = np.array([2, 0, 0, 0], np.int32)
  out, nfe, _ = (sequential_sample_cached if cache else sequential_sample)(model.apply, params, jnp.asarray(np.repeat(prompt[None], S, 0)),
                                  jnp.repeat(rank[None], S, 0), jnp.ones((S,), jnp.int32), jax.random.PRNGKey(1),
                                  mask_id=5)
  assert (np.asarray(nfe) == 3).all()
  import itertools
  comps = np.array(list(itertools.product(range(5), repeat=3)), np.int32)
  full = np.repeat(prompt[None], len(comps), 0)
  full[:, 1:] = comps
  p = np.exp(np.asarray(joint_log_prob(model.apply, params, jnp.asarray(full), jnp.repeat(rank[None], len(comps), 0),
                                       jnp.ones((len(comps),), jnp.int32), mask_id=5), np.float64))
  idx = {tuple(c): i for i, c in enumerate(comps.tolist())}
  counts = np.bincount([idx[tuple(r)] for r in np.asarray(out)[:, 1:].tolist()], minlength=len(comps))
  assert 0.5 * np.abs(counts / S - p).sum() < 0.06
  from scipy import stats
  keep = p * S >= 5
  obs, exp = np.append(counts[keep], counts[~keep].sum()), np.append(p[keep], p[~keep].sum()) * S
  assert stats.chisquare(obs, exp / exp.sum() * obs.sum()).pvalue > 1e-3


def _passes(model, params, tokens, rank, m, n, k, drafts):
  """The decoder's draft pass (hidden content = mask) and verify pass (drafts written) at step n."""
  B, N = tokens.shape
  order = jnp.argsort(rank, axis=-1)
  slot = jnp.minimum(n[:, None] + jnp.arange(k)[None], N - 1)
  pos = jnp.take_along_axis(order, slot, 1)
  decoded = rank < n[:, None]
  content = jnp.where(decoded, tokens, 5)
  draft = model.apply({"params": params}, content, rank, m, pos, jnp.broadcast_to(n[:, None], (B, k)))
  written = content.at[jnp.arange(B)[:, None], pos].set(drafts)
  verify = model.apply({"params": params}, written, rank, m, pos, slot)
  return draft, verify, pos


def test_draft_and_verify_agree_on_the_first_target(tiny):
  """Lemma 1: the first target sees the same tokens in both passes (within 1e-5)."""
  model, params = tiny
  rng = np.random.default_rng(1)
  tokens, rank, m, _ = _random_rows(rng, 64, 10, 5)
  n = jnp.asarray(np.asarray(m) + rng.integers(0, 10 - np.asarray(m)), jnp.int32)
  draft, verify, _ = _passes(model, params, tokens, rank, m, n, 4, jnp.asarray(rng.integers(0, 5, (64, 4))))
  d, v = jnp.exp(banned_log_probs(draft, 5)), jnp.exp(banned_log_probs(verify, 5))
  assert float(jnp.abs(d[:, 0] - v[:, 0]).max()) < 1e-5
  assert float(jnp.abs(d[:, 1:] - v[:, 1:]).max()) > 1e-2     # later targets do differ (drafts read in verify)


def test_cached_calls_give_the_uncached_logits_at_every_step(tiny):
  """Along whole decodes of random rows (prompts, orders, padding): at every step n the cached draft call (the
  pending token as content) and verify call (drafts as content) give the uncached passes' probabilities within
  1e-5 (logits within float32 rounding), and the cache keeps only final entries (those of ranks < n)."""
  model, params = tiny
  rng = np.random.default_rng(5)
  B, N, k = 32, 9, 3
  tokens, rank, m, _ = _random_rows(rng, B, N, 5)
  valid = jnp.asarray(np.arange(N)[None] < rng.integers(N - 2, N + 1, (B, 1)))
  visible = (rank < m[:, None]) | ~valid                           # padding is prompt (ranks below m)
  rank, m = canonical_ranks(visible), jnp.sum(visible, 1).astype(jnp.int32)
  order = jnp.argsort(rank, axis=-1)
  apply = jax.jit(model.apply)                                     # the same shapes at every step: one compile
  call = jax.jit(lambda *a: _call(model.apply, params, *a))
  t_K = jnp.arange(k)
  worst = worst_logit = scale = 0.0
  cache = None
  for n in range(int(m.min()), N):
    n_B = jnp.maximum(m, n)
    slot = jnp.minimum(n_B[:, None] + t_K[None], N - 1)
    pos = jnp.take_along_axis(order, slot, 1)
    decoded = rank < n_B[:, None]
    content = jnp.where(decoded, tokens, 5)
    limit = jnp.broadcast_to(n_B[:, None], (B, k))
    draft = apply({"params": params}, content, rank, m, pos, limit, valid)
    drafts = jnp.take_along_axis(tokens, pos, 1)
    verify = apply({"params": params}, content.at[jnp.arange(B)[:, None], pos].set(drafts), rank, m, pos,
                         slot, valid)
    if cache is None:                                                # the first call is the prefill
      c_draft, cache = _prefill(model.apply, params, content, rank, m, valid, pos, limit)
    else:                                                            # rank n - 1 is pending where n > m
      tok, prank, ppos, live = _pending(tokens, order, n_B, jnp.minimum(n_B, jnp.maximum(m, n - 1)))
      c_draft, cache = call(cache, tok, prank, ppos, live, m, pos, limit)
      cache = cache.mark(prank, live)
    by_rank = (jnp.arange(N)[None] < n_B[:, None]) & jnp.take_along_axis(valid, order, 1)   # slots are ranks
    np.testing.assert_array_equal(np.asarray(cache.readable_BN), np.asarray(by_rank))
    c_verify, _ = call(cache, drafts, slot, pos, (n_B[:, None] + t_K[None]) < N, m, pos, slot)
    real = np.asarray((n_B[:, None] + t_K[None]) < N)
    for a, b in ((draft, c_draft), (verify, c_verify)):              # probabilities (logits reach ~1e2 here)
      pa, pb = (np.exp(np.asarray(banned_log_probs(x, 5))) for x in (a, b))
      worst = max(worst, float(np.abs(pa - pb)[real].max()))
      scale = max(scale, float(np.abs(np.asarray(a)).max()))
      worst_logit = max(worst_logit, float(np.abs(np.asarray(a) - np.asarray(b))[real].max()))
  assert worst < 1e-5, worst
  assert worst_logit < 3e-6 * scale, (worst_logit, scale)   # float32 rounding (~1e-5 at |logit| ~ 10); a wrong
  # read (a slot, a mask, a position) moves them by 1e-2 or more


def test_cached_decoders_draw_what_the_uncached_ones_draw(tiny):
  """Same seeds, same rows: the cached samplers return the uncached ones' tokens, NFE and rounds (their logits
  agree to ~1e-7, so a draw could flip only on a tie within that; 128 rows of varied prompts)."""
  model, params = tiny
  tokens, rank, m, _ = _random_rows(np.random.default_rng(6), 128, 9, 5)
  a = assd_sample(model.apply, params, tokens, rank, m, jax.random.PRNGKey(4), k=4, mask_id=5)
  b = assd_sample_cached(model.apply, params, tokens, rank, m, jax.random.PRNGKey(4), k=4, mask_id=5)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_no_position_sees_a_token_it_must_not_see(tiny):
  """Verify pass: the logits at sigma(i) do not move when x_sigma(j), j >= i, changes (its own token included) and
  do move for some j < i. Draft pass: no target logit moves when an undecoded position changes."""
  model, params = tiny
  N, k = 9, 5
  visible = np.zeros(N, bool)
  visible[[1, 4, 6]] = True
  rank = canonical_ranks(jnp.asarray(visible))[None]
  m = jnp.asarray([3], jnp.int32)
  n = jnp.asarray([4], jnp.int32)                       # 3 prompt tokens + 1 decoded; drafts for ranks 4..8
  rng = np.random.default_rng(2)
  tokens = jnp.asarray(rng.integers(0, 5, (1, N)), jnp.int32)
  drafts = jnp.asarray(rng.integers(0, 5, (1, k)), jnp.int32)
  order = np.asarray(jnp.argsort(rank[0]))

  def verify_logits(toks, drs):
    return np.asarray(_passes(model, params, toks, rank, m, n, k, drs)[1][0])

  def draft_logits(toks):
    return np.asarray(_passes(model, params, toks, rank, m, n, k, drafts)[0][0])

  base_v, base_d = verify_logits(tokens, drafts), draft_logits(tokens)
  moved_by_earlier = False
  for i in range(k):                                   # target rank 4 + i
    for j in range(N):                                 # perturb the token of rank j
      pos = order[j]
      toks, drs = tokens, drafts
      if j >= 4:                                       # a draft slot
        drs = drafts.at[0, j - 4].set((drafts[0, j - 4] + 1) % 5)
      else:
        toks = tokens.at[0, pos].set((tokens[0, pos] + 1) % 5)
      diff = np.abs(verify_logits(toks, drs)[i] - base_v[i]).max()
      if j >= 4 + i:
        assert diff < 1e-6, (i, j, diff)
      elif diff > 1e-3:
        moved_by_earlier = True
  assert moved_by_earlier
  for j in range(4, N):                                # undecoded positions: drafts must not see them
    toks = tokens.at[0, order[j]].set((tokens[0, order[j]] + 2) % 5)
    assert np.abs(draft_logits(toks) - base_d).max() < 1e-6


def test_objective_equals_the_brute_force_chain_nll(tiny):
  model, params = tiny
  objective = AnySubsetObjective(final_min_rate=0.5, final_max_rate=0.5, parallel_weight=0.3)
  tokens = jnp.asarray(np.random.default_rng(3).integers(0, 5, (2, 8)), jnp.int32)
  batch = objective.prepare({"tokens": tokens}, jax.random.PRNGKey(0))     # eval: the final rates
  loss, metrics = objective.loss(model.apply, params, batch, None)
  n_pred = 8 - np.asarray(batch["m"])
  assert (n_pred == 4).all()
  # joint: -log p(chain) summed over rows / targets, one query per call, with the full softmax (training does not
  # ban the mask id)
  chain = 0.0
  for b in range(2):
    order = np.argsort(np.asarray(batch["rank"][b]))
    for i in range(4, 8):
      pos = jnp.asarray([[order[i]]])
      lg = model.apply({"params": params}, tokens[b:b + 1], batch["rank"][b:b + 1], batch["m"][b:b + 1], pos,
                       jnp.asarray([[i]]))
      chain -= float(jax.nn.log_softmax(lg[0, 0])[tokens[b, order[i]]])
  np.testing.assert_allclose(float(metrics["joint_nll"]), chain / 8, rtol=1e-5)
  par = 0.0
  for b in range(2):
    order = np.argsort(np.asarray(batch["rank"][b]))
    pos = jnp.asarray([order[4:8]])
    lg = model.apply({"params": params}, tokens[b:b + 1], batch["rank"][b:b + 1], batch["m"][b:b + 1], pos,
                     jnp.full((1, 4), 4))
    par -= float(jnp.take_along_axis(jax.nn.log_softmax(lg[0]), tokens[b, order[4:8]][:, None], 1).sum())
  np.testing.assert_allclose(float(metrics["parallel_nll"]), par / 8, rtol=1e-5)
  np.testing.assert_allclose(float(loss), chain / 8 + 0.3 * par / 8, rtol=1e-5)


def test_asarm_trains_in_the_generic_loop_and_infills(tmp_path):
  from configs import asarm
  from tests.helpers import train_losses
  from train.modes import run
  from train.loop import train
  c = asarm.get_config("tiny")
  c.unlock()
  c.train.num_steps = 40
  c.train.eval_every = c.train.checkpoint_every = 40
  c.optim.lr = 3e-3
  workdir = str(tmp_path / "asarm")
  metrics = train(c, workdir)
  losses = train_losses(workdir)
  assert losses[max(losses)] < 0.85 * losses[min(losses)], losses
  assert np.isfinite(metrics["joint_nll"]) and np.isfinite(metrics["parallel_nll"])
  out = run(c, workdir, mode="decode", text="import [MASK][MASK][MASK]\nprint(1)")
  assert out[0].startswith("import ") and out[0].endswith("\nprint(1)") and "[MASK]" not in out[0]


def test_padding_is_invisible(tiny):
  """A row padded to a longer length (valid = False) has the same joint as the unpadded row, whatever the pads
  hold: padding is never read and never generated."""
  model, params = tiny
  rng = np.random.default_rng(4)
  short = rng.integers(0, 5, (16, 6)).astype(np.int32)
  visible = np.zeros((16, 6), bool)
  visible[:, [0, 3]] = True
  lp_short = joint_log_prob(model.apply, params, jnp.asarray(short), canonical_ranks(jnp.asarray(visible)),
                            jnp.full((16,), 2, jnp.int32), mask_id=5)
  padded = np.concatenate([short, rng.integers(0, 5, (16, 3))], 1).astype(np.int32)
  valid = np.arange(9)[None].repeat(16, 0) < 6
  vis_p = np.concatenate([visible, np.ones((16, 3), bool)], 1)     # padding counts as visible, never a target
  lp_padded = joint_log_prob(model.apply, params, jnp.asarray(padded), canonical_ranks(jnp.asarray(vis_p)),
                             jnp.full((16,), 5, jnp.int32), jnp.asarray(valid), mask_id=5)
  np.testing.assert_allclose(np.asarray(lp_padded), np.asarray(lp_short), atol=1e-5)
