"""Speculative decoding is exact: enumeration and chi-square against the target law, greedy = target greedy,
a wrong acceptance rule is caught by the same harness, and K-SEQ accepts at least as often as one draft."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from decode.generate import generate
from decode.sampling import SamplerConfig
from decode.speculative import kseq_rho, kseq_select, speculative_generate, verify_standard
from models.causal_lm import CausalLm, CausalLmConfig

T = np.array([0.05, 0.4, 0.3, 0.15, 0.1])
D = np.array([0.3, 0.1, 0.3, 0.05, 0.25])


def _chi2_pvalue(samples, probs):
  counts = np.bincount(samples, minlength=len(probs))
  return stats.chisquare(counts, probs / probs.sum() * len(samples)).pvalue


def _first_token_law(verify_fn, n=40000):
  keys = jax.random.split(jax.random.PRNGKey(0), n + 1)
  drafts = jax.vmap(lambda k: jax.random.categorical(k, jnp.log(jnp.asarray(D)), shape=(1,)))(keys[1:])
  tp = jnp.broadcast_to(jnp.asarray(np.stack([T, T])), (n, 2, 5))
  dp = jnp.broadcast_to(jnp.asarray(D)[None], (n, 1, 5))
  acc, nxt = verify_fn(keys[0], tp, dp, drafts)
  return np.asarray(jnp.where(acc > 0, drafts[:, 0], nxt))


def test_standard_verification_samples_the_target_and_a_wrong_rule_is_rejected():
  assert _chi2_pvalue(_first_token_law(verify_standard), T) > 1e-3

  def wrong(key, tp, dp, drafts):   # accept as usual but resample from the target instead of the residual
    n, _ = verify_standard(key, tp, dp, drafts)
    return n, jax.random.categorical(jax.random.fold_in(key, 1), jnp.log(tp[:, 0]))

  assert _chi2_pvalue(_first_token_law(wrong), T) < 1e-6


@pytest.mark.parametrize("K", [1, 2, 3])
def test_kseq_output_law_equals_the_target_by_enumeration(K):
  rho = float(kseq_rho(jnp.asarray(T), jnp.asarray(D), K))
  beta = np.minimum(D, T / rho).sum()
  assert rho * beta >= 1 - (1 - beta) ** K - 1e-5          # validity of rho*
  law = np.zeros(5)
  resid = (T - np.minimum(D, T / rho) * (1 - (1 - beta) ** K) / beta) / (1 - beta) ** K
  assert resid.min() >= -1e-6
  for tup in itertools.product(range(5), repeat=K):
    p_tuple = np.prod(D[list(tup)])
    none = 1.0
    for x in tup:   # first accepted candidate, in order
      a = min(1.0, T[x] / (rho * D[x]))
      law[x] += p_tuple * none * a
      none *= 1 - a
    law += p_tuple * none * np.maximum(resid, 0)
  np.testing.assert_allclose(law, T, atol=1e-6)
  if K > 1:   # the same enumeration catches a wrong rule: accepting with rho = 1 instead of rho*
    wrong = np.zeros(5)
    for tup in itertools.product(range(5), repeat=K):
      p_tuple, none = np.prod(D[list(tup)]), 1.0
      for x in tup:
        a = min(1.0, T[x] / D[x])
        wrong[x] += p_tuple * none * a
        none *= 1 - a
      wrong += p_tuple * none * np.maximum(resid, 0)
    assert np.abs(wrong - T).max() > 0.01
  # The sampled selection follows the same law.
  keys = jax.random.split(jax.random.PRNGKey(K), 30000)
  cands = jax.vmap(lambda k: jax.random.categorical(k, jnp.log(jnp.asarray(D)), shape=(K,)))(keys)
  out = jax.vmap(lambda k, c: kseq_select(k, jnp.asarray(T), jnp.asarray(D), c, jnp.ones(K, bool))[2])(
      jax.random.split(jax.random.PRNGKey(100 + K), 30000), cands)
  assert _chi2_pvalue(np.asarray(out), T) > 1e-3


def test_kseq_accepts_at_least_as_often_as_one_draft():
  rng = np.random.default_rng(0)
  for _ in range(20):
    t, d = rng.dirichlet(np.ones(8) * 0.5), rng.dirichlet(np.ones(8) * 0.5)
    standard = np.minimum(t, d).sum()
    prev = standard
    for K in (1, 2, 3, 4):
      rho = float(kseq_rho(jnp.asarray(t), jnp.asarray(d), K))
      acc = 1 - (1 - np.minimum(d, t / rho).sum()) ** K
      assert acc >= prev - 1e-5
      prev = acc
    assert abs(float(1 - (1 - np.minimum(d, t / float(kseq_rho(jnp.asarray(t), jnp.asarray(d), 1))).sum())) -
               standard) < 1e-6


def _tiny(seed, layers):
  cfg = CausalLmConfig(vocab_size=6, hidden_size=16, num_layers=layers, num_heads=2, intermediate_size=32,
                       max_position_embeddings=32, style="modern")
  model = CausalLm(cfg)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 4), jnp.int32))["params"]
  params = jax.tree.map(lambda p: p.unbox() if hasattr(p, "unbox") else p, params,
                        is_leaf=lambda p: hasattr(p, "unbox"))
  params = jax.tree.map(lambda p: p * (25.0 if p.ndim > 1 else 1.0), params)   # peaked but not degenerate
  return model, params


@pytest.fixture(scope="module")
def models():
  return _tiny(0, 2), _tiny(1, 1)


def _spec(models, prompts, n, k, K, sampler, key=0):
  (target, tp), (draft, dp) = models
  arr = jnp.asarray(prompts, jnp.int32)
  return speculative_generate(target.apply, draft.apply, target.init_cache, draft.init_cache, tp, dp, arr,
                              jnp.full((arr.shape[0],), arr.shape[1], jnp.int32), jax.random.PRNGKey(key),
                              num_draft_tokens=k, num_drafts=K, max_new_tokens=n, sampler=sampler)


@pytest.mark.parametrize("K", [1, 3])
def test_greedy_speculative_equals_target_greedy(models, K):
  (target, tp), _ = models
  prompts = np.array([[1, 2, 3], [4, 0, 5], [2, 2, 2]])
  toks, lengths, stats_ = _spec(models, prompts, 9, 3, K, None)
  ref, _ = generate(target.apply, target.init_cache, tp, jnp.asarray(prompts), jnp.full((3,), 3, jnp.int32),
                    jax.random.PRNGKey(0), max_new_tokens=9)
  np.testing.assert_array_equal(np.asarray(toks), np.asarray(ref))
  assert np.asarray(lengths).tolist() == [12, 12, 12]


@pytest.mark.parametrize("K", [1, 3])
def test_sampled_speculative_two_token_law_equals_the_target(models, K):
  (target, tp), _ = models
  prompt = [1, 2, 3]
  cfg = SamplerConfig(temperature=1.0)
  # Exact target law of the next two tokens, by enumeration through the target model.
  p1 = np.asarray(jax.nn.softmax(target.apply({"params": tp}, jnp.asarray([prompt]))[0, -1]), np.float64)
  seqs = jnp.asarray([prompt + [a] for a in range(6)])
  p2 = np.asarray(jax.nn.softmax(target.apply({"params": tp}, seqs)[:, -1]), np.float64)
  joint = (p1[:, None] * p2).ravel()
  n = 6000
  toks, _, st = _spec(models, np.array([prompt] * n), 2, 2, K, cfg, key=K)
  toks = np.asarray(toks)
  pairs = toks[:, 3] * 6 + toks[:, 4]
  keep = joint * n >= 5
  observed = np.append(np.bincount(pairs, minlength=36)[keep], np.bincount(pairs, minlength=36)[~keep].sum())
  expected = np.append(joint[keep], joint[~keep].sum()) * n
  assert stats.chisquare(observed, expected / expected.sum() * n).pvalue > 1e-3
  tv = 0.5 * np.abs(np.bincount(pairs, minlength=36) / n - joint).sum()
  assert tv < 0.05
  assert int(np.asarray(st["accepted"]).sum()) > 0


def _law(model, params, prompt, n, V=6):
  """The exact law of the next n tokens after `prompt` ([V] * n), by enumerating every continuation."""
  import itertools
  seqs = np.array([prompt + list(c) for c in itertools.product(range(V), repeat=n)], np.int32)
  logp = jax.nn.log_softmax(model.apply({"params": params}, jnp.asarray(seqs))[:, len(prompt) - 1:-1], -1)
  steps = np.take_along_axis(np.asarray(logp, np.float64), seqs[:, len(prompt):, None], -1)[..., 0]
  return np.exp(steps.sum(1))


def test_spectr_over_several_rounds_samples_the_target_law(models):
  """k = 2 drafts from K = 3 sequences, 4 new tokens: at least two rounds, so the caches are re-synchronised to
  an accepted draft in between. The 4-token law is the target's (chi-square over the enumerated 6^4 outcomes),
  and the same test rejects the draft model's law (the negative control)."""
  (target, tp), (draft, dp) = models
  prompt, n, samples = [1, 2, 3], 4, 20000
  law = _law(target, tp, prompt, n)
  toks, _, st = _spec(models, np.array([prompt] * samples), n, 2, 3, SamplerConfig(temperature=1.0), key=11)
  assert int(np.asarray(st["rounds"]).min()) >= 2
  new = np.asarray(toks)[:, 3:3 + n]
  counts = np.bincount(new @ (6 ** np.arange(n)[::-1]), minlength=6 ** n)

  def p_value(p):
    keep = p * samples >= 5
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(p[keep], p[~keep].sum()) * samples
    return stats.chisquare(obs, exp / exp.sum() * obs.sum()).pvalue

  assert abs(law.sum() - 1) < 1e-6
  assert p_value(law) > 1e-3
  # TV against the noise floor of an exact sampler with as many draws (1,296 outcomes: the floor is not small).
  exact = np.random.default_rng(0).multinomial(samples, law / law.sum())
  assert 0.5 * np.abs(counts / samples - law).sum() < 1.5 * 0.5 * np.abs(exact / samples - law).sum()
  assert p_value(_law(draft, dp, prompt, n)) < 1e-6


def test_more_drafts_accept_more_per_round(models):
  prompts = np.array([[1, 2, 3]] * 256)
  cfg = SamplerConfig(temperature=1.0)
  acc = {}
  for K in (1, 3):
    _, _, st = _spec(models, prompts, 8, 3, K, cfg, key=7)
    acc[K] = float(np.asarray(st["accepted"]).mean())
  assert acc[3] >= acc[1]
