"""Samplers: the kept token sets equal Hugging Face's logits warpers exactly (ties included); Top-H's bound holds;
sampling from a chain follows the renormalised kept distribution (chi-square)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from decode import sampling
from models.layers.categorical import inverse_cdf_categorical
from tests.helpers import require

torch = require("torch")
lp = require("transformers.generation.logits_process")


def _logits(seed, batch, vocab, ties):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, vocab)) * rng.uniform(0.5, 4.0)
  if ties:   # coarse rounding creates many exact ties, including at the cut-offs
    x = np.round(x * 2) / 2
  return x.astype(np.float32)


CASES = [(seed, b, v, ties) for seed, (b, v), ties in itertools.product(range(3), [(1, 7), (4, 50), (3, 300)],
                                                                        [False, True])]


def _hf_kept(warper, x):
  out = warper(torch.zeros((x.shape[0], 1), dtype=torch.long), torch.tensor(x))
  return np.isfinite(out.numpy())


def _ours_kept(fn, x, *args):
  return np.isfinite(np.asarray(fn(jnp.asarray(x), *args)))   # eager: one compile per op, not per setting


@pytest.mark.parametrize("seed, batch, vocab, ties", CASES)
def test_warpers_keep_the_same_tokens_as_hugging_face(seed, batch, vocab, ties):
  x = _logits(seed, batch, vocab, ties)
  checks = []
  for m in (1, 3):
    for k in (1, 5, 40):
      checks.append((lp.TopKLogitsWarper(k, min_tokens_to_keep=m), sampling.top_k, k, m))
    for p in (0.1, 0.5, 0.9, 0.999):
      checks.append((lp.TopPLogitsWarper(p, min_tokens_to_keep=m), sampling.top_p, p, m))
      checks.append((lp.TypicalLogitsWarper(p, min_tokens_to_keep=m), sampling.typical, p, m))
    for p in (0.01, 0.1, 0.5):
      checks.append((lp.MinPLogitsWarper(p, min_tokens_to_keep=m), sampling.min_p, p, m))
    for e in (1e-3, 0.02, 0.2):
      checks.append((lp.EpsilonLogitsWarper(e, min_tokens_to_keep=m), sampling.epsilon, e, m))
      checks.append((lp.EtaLogitsWarper(e, min_tokens_to_keep=m), sampling.eta, e, m))
  for a in (0.1, 0.4, 0.9):   # at 1.0 HF's last token is a float-rounding coin flip (cumsum vs entropy())
    checks.append((lp.TopHLogitsWarper(a), lambda z, a: sampling.top_h(z, a, "hf"), a))
  for hf, fn, *args in checks:
    ours, ref = _ours_kept(fn, x, *args), _hf_kept(hf, x)
    for row, o, r in zip(x, ours, ref):
      if _closed_under_ties(row, r):
        np.testing.assert_array_equal(o, r, err_msg=f"{hf.__class__.__name__} {args}")
      else:
        # HF's cut splits a group of equal logits, and which members survive depends on torch.sort/topk's
        # unspecified order among equal keys; the kept sets must then agree up to exchanging equal logits.
        np.testing.assert_array_equal(np.sort(row[o]), np.sort(row[r]), err_msg=f"{hf.__class__.__name__} {args}")


def _closed_under_ties(row, kept):
  """True if no kept token has a removed twin with the same logit (HF's result is then order-independent)."""
  return not np.isin(row[~kept], row[kept]).any()


def test_chain_matches_hugging_face_processor_list():
  x = _logits(7, 4, 300, ties=False)
  cfg = sampling.SamplerConfig(temperature=0.7, top_k=60, top_p=0.9, min_p=0.02, typical_p=0.95, epsilon=1e-4,
                               eta=1e-3, min_tokens_to_keep=2)
  hf = lp.LogitsProcessorList([lp.TemperatureLogitsWarper(0.7), lp.TopKLogitsWarper(60, min_tokens_to_keep=2),
                               lp.TopPLogitsWarper(0.9, min_tokens_to_keep=2),
                               lp.MinPLogitsWarper(0.02, min_tokens_to_keep=2),
                               lp.TypicalLogitsWarper(0.95, min_tokens_to_keep=2),
                               lp.EpsilonLogitsWarper(1e-4, min_tokens_to_keep=2),
                               lp.EtaLogitsWarper(1e-3, min_tokens_to_keep=2)])
  ref = hf(torch.zeros((4, 1), dtype=torch.long), torch.tensor(x)).numpy()
  ours = np.asarray(jax.jit(sampling.apply_chain, static_argnums=1)(jnp.asarray(x), cfg))
  np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(ref))
  np.testing.assert_allclose(ours[np.isfinite(ours)], ref[np.isfinite(ref)], rtol=1e-6)
  # The order matters and is honoured: min-p before temperature keeps a different set here.
  swapped = sampling.SamplerConfig(temperature=0.3, min_p=0.2, order=("min_p", "temperature"))
  default = sampling.SamplerConfig(temperature=0.3, min_p=0.2)
  assert not np.array_equal(np.isfinite(sampling.apply_chain(jnp.asarray(x), swapped)),
                            np.isfinite(sampling.apply_chain(jnp.asarray(x), default)))


@pytest.mark.parametrize("alpha", [0.2, 0.4, 0.8])
def test_top_h_paper_variant_is_the_largest_prefix_within_the_entropy_bound(alpha):
  x = _logits(11, 8, 200, ties=False)
  kept = np.isfinite(np.asarray(sampling.top_h(jnp.asarray(x), alpha, "paper")))
  for row, k in zip(x, kept):
    p = np.exp(row - row.max())
    p /= p.sum()
    h = lambda q: float(-(q * np.log(q)).sum())  # noqa: E731
    order = np.argsort(-p)
    n = int(k.sum())
    assert set(np.flatnonzero(k)) == set(order[:n])            # a prefix of the probability order
    q = p[order[:n]] / p[order[:n]].sum()
    assert n == 1 or h(q) <= alpha * h(p) + 1e-6
    q_next = p[order[:n + 1]] / p[order[:n + 1]].sum()
    assert h(q_next) > alpha * h(p)                             # one more token breaks the bound


def test_top_h_reference_variant_matches_the_authors_rule():
  x = _logits(5, 3, 400, ties=False)
  alpha = 0.4
  kept = np.isfinite(np.asarray(sampling.top_h(jnp.asarray(x), alpha, "reference")))
  for row, k in zip(x, kept):
    p = np.exp(row - row.max())
    p /= p.sum()
    order = np.argsort(-p)[:100]
    terms = -p[order] * np.log2(p[order])
    tau = alpha * terms.sum()
    n = max(1, int(np.sum(np.cumsum(terms) <= tau)))
    assert set(np.flatnonzero(k)) == set(order[:n])


def test_sampling_from_a_chain_follows_the_renormalised_kept_distribution():
  logits = jnp.log(jnp.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04]))
  cfg = sampling.SamplerConfig(top_p=0.85)
  kept = np.isfinite(np.asarray(sampling.apply_chain(logits, cfg)))
  assert kept.tolist() == [True, True, True, True, False, False]
  draws = jax.jit(jax.vmap(lambda k: sampling.sample(k, logits, cfg)))(jax.random.split(jax.random.PRNGKey(0), 40000))
  counts = np.bincount(np.asarray(draws), minlength=6)
  assert counts[4:].sum() == 0
  p = np.array([0.4, 0.25, 0.15, 0.1]) / 0.9
  assert stats.chisquare(counts[:4], 40000 * p).pvalue > 1e-3


def test_inverse_cdf_draws_follow_the_categorical_law_and_never_a_banned_id():
  """models.layers.categorical.inverse_cdf_categorical (ASSD's and ELECTRA's draws) against the exact law: 150 ids
  over 3 blocks of 64, banned ids (-inf) at the start, across a block boundary and at the end, and a nearly-zero id;
  chi-square over 60,000 draws. Negative control: the same test rejects draws from the law at temperature 1.1."""
  rng = np.random.default_rng(0)
  logits = rng.normal(size=150).astype(np.float32) * 2
  logits[[0, 1, 62, 63, 64, 65, 140, 149]] = -np.inf
  logits[100] = -30.0
  p = np.exp(logits.astype(np.float64) - logits.max())
  p /= p.sum()
  keys = jax.random.split(jax.random.PRNGKey(1), 60000)

  def counts(x):
    draws = np.asarray(jax.jit(jax.vmap(lambda k: inverse_cdf_categorical(k, jnp.asarray(x))))(keys))
    return np.bincount(draws, minlength=150)

  c = counts(logits)
  assert c[p == 0].sum() == 0
  big = p * 60000 >= 5
  expected = p[big] / p[big].sum()
  assert stats.chisquare(c[big], c[big].sum() * expected).pvalue > 1e-3
  c_wrong = counts(logits / 1.1)
  assert stats.chisquare(c_wrong[big], c_wrong[big].sum() * expected).pvalue < 1e-6
