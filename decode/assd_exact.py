"""The exact joint of a tiny any-subset AR model's completions, and ASSD's / naive parallel sampling's samples
against it (chi-square and total variation): the oracle of tests/families/test_asarm.py and bench/assd_exactness.py.

The target is enumerated with `decode.assd.joint_log_prob` over every completion of the hidden positions (the
model's own joint along the canonical order, which ASSD must sample exactly); the samplers are only run, never
consulted, so a wrong acceptance rule shows as a rejected chi-square.
"""
import itertools

import numpy as np


def build(vocab: int, seed: int, init_scale: float):
  import jax

  from models.asarm import AnySubsetObjective, AsArm, AsArmConfig
  from models.family import init_variables, token_batch_spec
  cfg = AsArmConfig(vocab_size=vocab + 1, mask_id=vocab, hidden_size=32, num_layers=2, num_heads=2,
                    intermediate_size=64, initializer_range=init_scale)
  model = AsArm(cfg)
  params = init_variables(model, AnySubsetObjective(), token_batch_spec(4), jax.random.PRNGKey(seed))["params"]
  import flax.linen as nn
  return model, nn.unbox(params)


def exactness(vocab, length, prompt, k, samples, seed, temperature=1.0, init_scale=0.6, vocab_limit=None, pad=0,
              cache=False):
  """`vocab_limit`: only ids below it may be generated (the decoders' banned embedding rows); `pad`: padding
  positions appended to the row (never read, never generated), as every batched decode has; `cache`: ASSD over
  the rank cache (decode/assd_cached.py) instead of re-encoding the row at every call."""
  import jax
  import jax.numpy as jnp
  from scipy import stats

  from decode.assd import assd_sample, joint_log_prob, parallel_sample
  from decode.assd_cached import assd_sample_cached
  from models.asarm import canonical_ranks
  model, params = build(vocab, seed, init_scale)
  rng = np.random.default_rng(seed)
  N, M = length + pad, prompt + pad
  visible = np.ones(N, bool)
  visible[:length] = False
  visible[rng.choice(length, prompt, replace=False)] = True
  valid = np.arange(N) < length
  prompt_tokens = rng.integers(0, vocab_limit or vocab, N)
  rank = np.asarray(canonical_ranks(jnp.asarray(visible)))
  hidden = np.flatnonzero(~visible)
  completions = np.array(list(itertools.product(range(vocab_limit or vocab), repeat=N - M)), np.int32)
  C = len(completions)
  full = np.repeat(prompt_tokens[None], C, 0).astype(np.int32)
  full[:, hidden] = completions
  B = lambda x: jnp.asarray(np.repeat(np.asarray(x)[None], C, 0))  # noqa: E731
  kw = dict(mask_id=vocab, temperature=temperature, vocab_limit=vocab_limit)
  logp = np.asarray(joint_log_prob(model.apply, params, jnp.asarray(full), B(rank), jnp.full((C,), M), B(valid),
                                   **kw), np.float64)
  target = np.exp(logp)
  total = float(target.sum())
  index = {tuple(c): i for i, c in enumerate(completions.tolist())}

  def draw(sampler, **extra):
    S = samples
    toks = jnp.asarray(np.repeat(prompt_tokens[None], S, 0).astype(np.int32))
    out, nfe, rounds = sampler(model.apply, params, toks, jnp.asarray(np.repeat(rank[None], S, 0)),
                               jnp.full((S,), M, jnp.int32), jax.random.PRNGKey(seed + 1),
                               jnp.asarray(np.repeat(valid[None], S, 0)), **kw, **extra)
    out = np.asarray(out)
    assert (out[:, visible] == prompt_tokens[visible]).all(), "the prompt changed"
    assert vocab_limit is None or (out[:, hidden] < vocab_limit).all(), "an id at or above vocab_limit was drawn"
    counts = np.bincount([index[tuple(r)] for r in out[:, hidden].tolist()], minlength=C)
    expected = target / total * S
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
      obs, exp = obs[:-1], exp[:-1]
    p_value = float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)
    tv = 0.5 * float(np.abs(counts / S - target / total).sum())
    return tv, p_value, np.asarray(nfe), np.asarray(rounds)

  assd_tv, assd_p, nfe, rounds = draw(assd_sample_cached if cache else assd_sample, k=k)
  par_tv, par_p, _, _ = draw(parallel_sample)
  return {"vocab": vocab, "length": length, "prompt": prompt, "pad": pad, "vocab_limit": vocab_limit, "k": k,
          "cache": cache,
          "samples": samples, "seed": seed,
          "target_mass": total, "assd_tv": assd_tv, "assd_p": assd_p, "parallel_tv": par_tv, "parallel_p": par_p,
          "nfe_per_token": float(nfe.mean()) / (N - M), "max_nfe": int(nfe.max()),
          "tokens_per_round": float((N - M) / rounds.mean())}
