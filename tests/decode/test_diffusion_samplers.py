"""Diffusion-LM samplers (decode/diffusion.py) against exact enumeration of their output laws
(decode/diffusion_exact.py), and the spec's reference values (Bansal & Sanghavi 2025 §9).

Oracles: the copy fixture's TV / KL / exact MAUVE table (spec §9.1), the D1 identities, and for the jitted samplers a
chi-square test of 20,000 draws against the enumerated law, with a wrong rule's law as the negative control.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from decode import diffusion_exact as ex
from decode.diffusion import adjust_sample, ancestral_sample, unmask_sample
from decode.sampling import SamplerConfig

V, L, MASK = 3, 4, 3          # vocabulary 0..2, mask id 3: logits are V + 1 wide
N = 20_000


# --- spec §9: exact enumeration on the copy fixture ------------------------------------------------------------

@pytest.fixture(scope="module")
def copy_base():
  return ex.table_conditionals(ex.copy_fixture(V, L), MASK)


def test_copy_fixture_reference_values(copy_base):
  x0 = np.full(L, MASK)
  seq = ex.unmask_law(copy_base, x0, mask_id=MASK, vocab=V, k=1)
  assert ex.tv(seq, ex.table_law(ex.copy_fixture(V, L), x0, MASK)) < 1e-12   # exact conditionals: P_seq = P
  expected = {1: (0.0, 0.0, 1.0), 2: (0.5667, 0.7042, 0.377), 3: (0.6989, 1.4084, 0.132), 4: (0.7127, 2.1126, 0.059)}
  for K, (tv_ref, kl_ref, mauve_ref) in expected.items():
    par = ex.unmask_law(copy_base, x0, mask_id=MASK, vocab=V, k=K)
    assert abs(ex.tv(par, seq) - tv_ref) < 1e-4, K
    assert abs(ex.kl(seq, par) - kl_ref) < 1e-4, K
    assert abs(ex.mauve_exact(seq, par) - mauve_ref) < 1e-3, K


def test_d1_plumbing_identities(copy_base):
  x0 = np.full(L, MASK)
  seq = ex.unmask_law(copy_base, x0, mask_id=MASK, vocab=V, k=1)
  with_h = lambda x: (copy_base(x), None)                                        # noqa: E731
  for K in (1, 2, 3, 4):
    par = ex.unmask_law(copy_base, x0, mask_id=MASK, vocab=V, k=K)
    oracle = ex.adjust_law(with_h, lambda x, h, logits: (copy_base(x), None), x0, mask_id=MASK, vocab=V, k=K)
    identity = ex.adjust_law(with_h, lambda x, h, logits: (logits, h), x0, mask_id=MASK, vocab=V, k=K)
    assert ex.tv(oracle, seq) < 1e-12, K
    assert ex.tv(identity, par) < 1e-12, K
    if K == 1:
      assert ex.tv(par, seq) < 1e-12 and ex.tv(identity, seq) < 1e-12
    else:     # the identities are not vacuous: the parallel law is far from the joint
      assert ex.tv(par, seq) > 0.5


# --- the jitted samplers against the enumerated law ------------------------------------------------------------

@pytest.fixture(scope="module")
def table():
  """A random joint over {0,1,2}^4 (Dirichlet 0.3: no ties between positions) and its exact conditionals in JAX."""
  rng = np.random.default_rng(3)
  P = rng.dirichlet(np.full(V ** L, 0.3)).reshape((V,) * L)
  seqs = jnp.asarray(list(itertools.product(range(V), repeat=L)))              # [81, L]
  onehot = jax.nn.one_hot(seqs, V + 1)                                          # [81, L, V+1]
  p_flat = jnp.asarray(P.reshape(-1), jnp.float32)

  def denoise(x_BL):
    match_BS = jnp.all((x_BL[:, None, :] == MASK) | (x_BL[:, None, :] == seqs[None]), axis=-1)
    w_BS = jnp.where(match_BS, p_flat[None], 0.0)
    marg_BLV = jnp.einsum("bs,slv->blv", w_BS, onehot) / w_BS.sum(-1)[:, None, None]
    return jnp.where((x_BL == MASK)[..., None], jnp.log(marg_BLV), jnp.log(jax.nn.one_hot(x_BL, V + 1)))

  def base_np(x_L):
    return np.asarray(denoise(jnp.asarray(x_L)[None])[0], np.float64)
  return P, denoise, base_np


def _counts(samples_NL, law):
  keys = list(law)
  index = {k: i for i, k in enumerate(keys)}
  counts = np.zeros(len(keys) + 1)
  for row in map(tuple, np.asarray(samples_NL).tolist()):
    counts[index.get(row, len(keys))] += 1
  return counts, keys


def chi2_p(samples_NL, law) -> float:
  counts, keys = _counts(samples_NL, law)
  if counts[-1]:
    return 0.0                                  # a sample outside the law's support
  exp = np.array([law[k] for k in keys]) * len(samples_NL)
  big = exp >= 5
  obs = np.append(counts[:-1][big], counts[:-1][~big].sum())
  exp = np.append(exp[big], exp[~big].sum())
  if exp[-1] == 0:
    obs, exp = obs[:-1], exp[:-1]
  return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def check_law(samples_NL, law, wrong_law):
  """Sampled law = enumerated law (chi-square, TV at the sampling noise floor), and the test can fail: the same
  samples reject a wrong rule's law."""
  assert chi2_p(samples_NL, law) > 1e-3
  counts, keys = _counts(samples_NL, law)
  empirical = {k: c / len(samples_NL) for k, c in zip(keys, counts[:-1])}
  assert ex.tv(empirical, law) < 0.03
  assert ex.tv(law, wrong_law) > 0.05, "negative control too close to discriminate"
  assert chi2_p(samples_NL, wrong_law) < 1e-6


def _start(prompt=None):
  x = np.full(L, MASK)
  if prompt:
    for j, v in prompt.items():
      x[j] = v
  return x


def _run(fn, x_L, seed=0):
  x_NL = jnp.broadcast_to(jnp.asarray(x_L, jnp.int32), (N, L))
  return jax.jit(fn)(x_NL, jax.random.PRNGKey(seed))


@pytest.mark.parametrize("kw,wrong", [
    (dict(k=1, rule="entropy"), dict(k=2, rule="entropy")),
    (dict(k=2, rule="entropy"), dict(k=1, rule="entropy")),
    (dict(k=2, rule="confidence"), dict(k=2, rule="margin")),
    (dict(k=2, rule="margin"), dict(k=3, rule="entropy")),
    (dict(k=2, rule="random"), dict(k=1, rule="entropy")),
    (dict(k=1, rule="confidence", threshold=0.5), dict(k=1, rule="confidence")),
    (dict(k=2, rule="confidence", block_len=2), dict(k=2, rule="confidence")),
])
def test_unmask_sampler_law(table, kw, wrong):
  P, denoise, base_np = table
  x0 = _start({1: 2})                           # a fixed position (prompt) in the middle
  out, calls = _run(lambda x, r: unmask_sample(denoise, x, r, mask_id=MASK, vocab_limit=V, tie_tol=1e-6, **kw), x0)
  assert np.all(np.asarray(out)[:, 1] == 2)
  law = ex.unmask_law(base_np, x0, mask_id=MASK, vocab=V, **kw)
  check_law(out, law, ex.unmask_law(base_np, x0, mask_id=MASK, vocab=V, **wrong))
  if "threshold" not in kw:
    k, block = kw["k"], kw.get("block_len")
    expected = np.ceil(3 / k) if block is None else 1 + np.ceil(2 / k)   # blocks {0, 1} and {2, 3}
    assert np.all(np.asarray(calls) == expected)


def test_sequential_sampler_is_the_joint_and_greedy_is_its_argmax_path(table):
  P, denoise, base_np = table
  x0 = _start()
  out, _ = _run(lambda x, r: unmask_sample(denoise, x, r, mask_id=MASK, vocab_limit=V, tie_tol=1e-6), x0)
  check_law(out, ex.table_law(P, x0, MASK), ex.unmask_law(base_np, x0, mask_id=MASK, vocab=V, k=4))
  greedy, _ = jax.jit(lambda x: unmask_sample(denoise, x, jax.random.PRNGKey(0), mask_id=MASK, k=2,
                                              rule="margin", sampler=None))(jnp.asarray(x0)[None])
  (point,) = ex.unmask_law(base_np, x0, mask_id=MASK, vocab=V, k=2, rule="margin", greedy=True)
  assert tuple(np.asarray(greedy)[0].tolist()) == point


def test_temperature_reaches_the_sampler_through_decode_sampling(table):
  P, denoise, base_np = table
  x0 = _start()
  hot = SamplerConfig(temperature=2.0)
  out, _ = _run(lambda x, r: unmask_sample(denoise, x, r, mask_id=MASK, k=2, sampler=hot, tie_tol=1e-6), x0)
  law = ex.unmask_law(base_np, x0, mask_id=MASK, vocab=V, k=2, temperature=2.0)
  check_law(out, law, ex.unmask_law(base_np, x0, mask_id=MASK, vocab=V, k=2))


def test_ancestral_sampler_law_and_cache(table):
  P, denoise, base_np = table
  x0 = _start({0: 1})
  fn = lambda cache: lambda x, r: ancestral_sample(denoise, x, r, mask_id=MASK, num_steps=3, cache=cache)  # noqa
  out, calls = _run(fn(False), x0)
  out_c, calls_c = _run(fn(True), x0)
  np.testing.assert_array_equal(out, out_c)         # the cache never changes a sample
  assert np.all(calls_c <= calls) and calls_c.mean() < calls.mean() - 0.2
  law = ex.ancestral_law(base_np, x0, mask_id=MASK, vocab=V, num_steps=3)
  check_law(out, law, ex.ancestral_law(base_np, x0, mask_id=MASK, vocab=V, num_steps=1))
  # calls: uncached = steps until done; cached = steps in which something was revealed before the last one + 1
  assert np.all(calls <= 3) and np.all(calls_c >= 1)


def test_adjust_sampler_law_with_a_nontrivial_adjust(table):
  P, denoise, base_np = table
  W = jnp.asarray(np.random.default_rng(1).normal(size=(V + 1, V + 1)), jnp.float32)

  def base(x_BL):
    logits = denoise(x_BL)
    return logits, jnp.zeros(x_BL.shape + (1,), jnp.float32)

  def adjust(x_BL, h_BL1, logits_BLV):    # depends on the new tokens, the carried state and the logits
    h = h_BL1 + 1.0
    mix = jax.nn.one_hot(x_BL, V + 1) @ W
    return jnp.where(jnp.isfinite(logits_BLV), logits_BLV + 0.5 * h * mix.sum(-1, keepdims=True) * mix, -jnp.inf), h

  def base_np1(x):
    lg, h = base(jnp.asarray(x)[None])
    return np.asarray(lg[0], np.float64), h

  def adjust_np(x, h, logits):
    lg, h = adjust(jnp.asarray(x)[None], h, jnp.asarray(logits, jnp.float32)[None])
    return np.asarray(lg[0], np.float64), h

  x0 = _start()
  out, base_calls, adjust_calls = _run(
      lambda x, r: adjust_sample(base, adjust, x, r, mask_id=MASK, k=3, vocab_limit=V, tie_tol=1e-6), x0)
  assert np.all(base_calls == 2) and np.all(adjust_calls == 2)     # 4 tokens at K = 3: steps of 3 and 1
  law = ex.adjust_law(base_np1, adjust_np, x0, mask_id=MASK, vocab=V, k=3)
  check_law(out, law, ex.unmask_law(base_np, x0, mask_id=MASK, vocab=V, k=3))


def test_per_row_progress_and_bans(table):
  P, denoise, base_np = table
  x = jnp.asarray([[MASK] * 4, [0, MASK, 1, 2], [0, 1, 2, 0]], jnp.int32)
  out, calls = jax.jit(lambda x: unmask_sample(denoise, x, jax.random.PRNGKey(0), mask_id=MASK,
                                               banned_ids=(2,)))(x)
  np.testing.assert_array_equal(calls, [4, 1, 0])
  np.testing.assert_array_equal(out[2], [0, 1, 2, 0])            # a finished row is never touched
  assert not np.any(np.asarray(out)[0] == 2) and out[1, 1] != 2   # banned id never drawn
  assert not np.any(np.asarray(out) == MASK)


def test_float64_noise_needs_x64_in_one_line(table):
  _, denoise, _ = table
  with pytest.raises(ValueError, match="jax_enable_x64"):
    unmask_sample(denoise, jnp.full((1, L), MASK), jax.random.PRNGKey(0), mask_id=MASK, noise_dtype=jnp.float64)


def test_adjust_sampler_reapplies_the_bans_to_the_adjust_logits(table):
  """An ADJUST call whose logits put mass on a banned id and on the mask id: the sampler bans them again, so
  neither is ever drawn (the base's banned logits are not what the later draws use)."""
  P, denoise, base_np = table

  def base(x_BL):
    return denoise(x_BL), jnp.zeros(x_BL.shape + (1,), jnp.float32)

  def adjust(x_BL, h_BL1, logits_BLV):      # finite logits everywhere, the largest on id 1 and on the mask
    return jnp.zeros_like(logits_BLV).at[..., 1].set(3.0).at[..., MASK].set(3.0), h_BL1

  out, _, adjust_calls = _run(lambda x, r: adjust_sample(base, adjust, x, r, mask_id=MASK, k=4, vocab_limit=V,
                                                          banned_ids=(1,)), _start())
  out = np.asarray(out)
  assert np.all(adjust_calls == 3) and not np.any(out == 1) and not np.any(out == MASK)
  assert np.all(np.isin(out, [0, 2]))
