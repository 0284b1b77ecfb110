"""ASSD samples exactly from an AS-ARM's joint; naive parallel sampling does not. Exact enumeration + chi-square.

  python -m bench.assd_exactness --vocab 4 --length 6 --prompt 2 --k 3 --samples 20000 --seed 0

Builds a random tiny AS-ARM (2 layers, d 32; weights drawn at --init_scale so its conditionals are peaked and
depend on each other: untrained weights are fine, the target is the model's own joint along the canonical order),
picks a random prompt of --prompt visible positions, enumerates the joint of the other positions exactly (one
batched density pass over all vocab^(length - prompt) completions), then draws --samples samples with ASSD (k
drafts per round) and as many with naive parallel sampling (every token from its draft marginal in one call).
For each: total-variation distance to the exact joint and Pearson's chi-square p-value (cells with expected
count < 5 pooled). The last line reads
  assd_tv=... assd_p=... parallel_tv=... parallel_p=... nfe_per_token=...
"""
import itertools
import json

import numpy as np
from absl import app, flags

_VOCAB = flags.DEFINE_integer("vocab", 4, "Real tokens (the mask token is one more id).")
_LENGTH = flags.DEFINE_integer("length", 6, "Sequence length N.")
_PROMPT = flags.DEFINE_integer("prompt", 2, "Visible positions M.")
_K = flags.DEFINE_integer("k", 3, "Drafts per ASSD round.")
_SAMPLES = flags.DEFINE_integer("samples", 20000, "Samples per sampler.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the model, prompt and samplers.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (both passes).")
_INIT_SCALE = flags.DEFINE_float("init_scale", 0.6, "Std of the random weights (larger: peakier conditionals).")
_CACHE = flags.DEFINE_boolean("cache", False, "ASSD over the rank cache (decode/assd_cached.py).")


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


def main(argv):
  del argv
  r = exactness(_VOCAB.value, _LENGTH.value, _PROMPT.value, _K.value, _SAMPLES.value, _SEED.value,
                _TEMPERATURE.value, _INIT_SCALE.value, cache=_CACHE.value)
  print(json.dumps(r))
  print(" ".join(f"{k}={r[k]:.4g}" for k in ("assd_tv", "assd_p", "parallel_tv", "parallel_p", "nfe_per_token")))


if __name__ == "__main__":
  app.run(main)
