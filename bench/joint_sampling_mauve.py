"""Parallel vs ADJUST sampling against the sequential reference at medium scale (spec §9.2 D5): MAUVE, true NLL,
distinct-n and tokens/s on a sparse first-order Markov language.

  python -m bench.joint_sampling_mauve [--vocab=64 --length=32 --samples=1000 --ks=1,2,3,4 --seed=0]

Language: a first-order Markov chain over V tokens, `--successors` allowed successors per token (Dirichlet(1)
weights), uniform start; exact log-likelihood per token is known. Base: a tiny MDLM (bench/joint_sampling_exact.py
train_mdlm: 2 layers, d = --hidden) trained --base-steps with the NELBO on fresh chain samples; ADJUST trained on
--trajectories of the base's own sequential trajectories for --adjust-steps. From all-mask rows, --samples each of:
the sequential sampler twice (independent seeds: the noise floor) and once with float64 Gumbel noise, parallel with K tokens per call and ADJUST with
one base call + K - 1 ADJUST calls. MAUVE (mauve-text, `compute_mauve(p_features=..., q_features=...)`, its
defaults; no download) against the first sequential set, on two feature sets: our own base's hidden states
(every other position masked, mean-pooled) and l2-normalised bag-of-bigrams counts (spec §7.2). Also: NLL per token of the samples under the true chain (smoothed by 1e-3 / V per transition)
and the fraction of impossible bigrams, distinct-2/3 (unique n-grams / all),
base and ADJUST calls per token, tokens/s (batched, jitted, compile excluded).
Also the time of one base call and one ADJUST call on the same batch.
Needs requirements-test.txt (mauve-text, faiss-cpu, scikit-learn).
"""
import json
import os
import platform
import time

import numpy as np
from absl import app, flags

from bench import record
from bench.joint_sampling_models import train_adjust, train_mdlm

_VOCAB = flags.DEFINE_integer("vocab", 64, "Vocabulary size.")
_LENGTH = flags.DEFINE_integer("length", 32, "Sequence length.")
_SUCCESSORS = flags.DEFINE_integer("successors", 4, "Allowed successors per token.")
_SAMPLES = flags.DEFINE_integer("samples", 1000, "Samples per sampler.")
_KS = flags.DEFINE_list("ks", ["1", "2", "3", "4"], "Tokens per base call.")
_HIDDEN = flags.DEFINE_integer("hidden", 128, "Base width.")
_BASE_STEPS = flags.DEFINE_integer("base_steps", 3000, "MDLM training steps.")
_ADJUST_STEPS = flags.DEFINE_integer("adjust_steps", 2000, "ADJUST training steps.")
_TRAJECTORIES = flags.DEFINE_integer("trajectories", 5000, "Base trajectories for ADJUST.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the language, the models and the samplers.")


def markov_chain(V, successors, seed):
  rng = np.random.default_rng(seed)
  T = np.zeros((V, V))
  for a in range(V):
    nxt = rng.choice(V, successors, replace=False)
    T[a, nxt] = rng.dirichlet(np.ones(successors))
  return T


def chain_sampler(T, L):
  import jax
  import jax.numpy as jnp
  logT = jnp.log(jnp.asarray(T, jnp.float32))
  V = T.shape[0]

  def sample(rng, B):
    r0, r = jax.random.split(rng)
    x0 = jax.random.randint(r0, (B,), 0, V)

    def step(x, key):
      y = jax.random.categorical(key, logT[x])
      return y, y
    _, rest = jax.lax.scan(step, x0, jax.random.split(r, L - 1))
    return jnp.concatenate([x0[:, None], rest.T], axis=1).astype(jnp.int32)
  return sample


def true_nll(T, x, eps=1e-3):
  """NLL per token under the chain smoothed with eps / V on every transition (an impossible bigram costs about
  log(V / eps) = 11 nats instead of infinity), and the fraction of impossible bigrams."""
  V = T.shape[0]
  logT = np.log((1 - eps) * T + eps / V)
  lp = -np.log(V) + logT[x[:, :-1], x[:, 1:]].sum(1)
  return float(-lp.mean() / x.shape[1]), float((T[x[:, :-1], x[:, 1:]] == 0).mean())


def bigram_features(x, V):
  """l2-normalised bag-of-bigrams counts [N, V * V] (spec §7.2's second feature set)."""
  f = np.zeros((len(x), V * V), np.float32)
  for i, r in enumerate(x):
    np.add.at(f[i], r[:-1] * V + r[1:], 1.0)
  return f / np.linalg.norm(f, axis=1, keepdims=True)


def distinct(x, n):
  grams = [tuple(r[i:i + n]) for r in x.tolist() for i in range(len(r) - n + 1)]
  return len(set(grams)) / len(grams)


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import mauve

  from decode.diffusion import adjust_sample, unmask_sample
  V, L, n, seed = _VOCAB.value, _LENGTH.value, _SAMPLES.value, _SEED.value
  t0 = time.time()
  T = markov_chain(V, _SUCCESSORS.value, seed)
  stationary_entropy = float(-(T * np.log(np.where(T > 0, T, 1))).sum(1).mean())
  cfg, base_params, l0, l1 = train_mdlm(chain_sampler(T, L), V, L, _BASE_STEPS.value, seed, hidden=_HIDDEN.value,
                                        batch=128)
  model, params, first, last = train_adjust(cfg, base_params, V, L, _ADJUST_STEPS.value, _TRAJECTORIES.value, seed,
                                            batch=128)
  v = {"params": params}
  base = lambda x: model.apply(v, x, method="base_step")                        # noqa: E731
  denoise = lambda x: base(x)[0]                                                # noqa: E731
  step = lambda x, h, logits: model.apply(v, x, h, method="adjust_step")       # noqa: E731
  # Model features: the base's hidden states with every other position masked (under SUBS an unmasked position is
  # copied, so hidden states of a fully revealed row were never trained), mean-pooled over the row.
  half = (jnp.arange(L) % 2 == 0)[None]
  feats = jax.jit(lambda x: model.apply(v, jnp.where(half, V, x), method="hidden").mean(1))
  x0 = jnp.full((n, L), V, jnp.int32)
  samplers = {"sequential": lambda x, r: unmask_sample(denoise, x, r, mask_id=V, vocab_limit=V)[:2] + (0,),
              "sequential (2nd seeds)": lambda x, r: unmask_sample(denoise, x, r, mask_id=V, vocab_limit=V)[:2] + (0,)}
  samplers["sequential, float64 noise"] = lambda x, r: unmask_sample(denoise, x, r, mask_id=V, vocab_limit=V,
                                                                    noise_dtype=jnp.float64)[:2] + (0,)
  for k in map(int, _KS.value):
    if k > 1:
      samplers[f"parallel K={k}"] = (lambda k: lambda x, r: unmask_sample(denoise, x, r, mask_id=V, vocab_limit=V,
                                                                          k=k)[:2] + (0,))(k)
      samplers[f"ADJUST K={k}"] = (lambda k: lambda x, r: adjust_sample(base, step, x, r, mask_id=V, vocab_limit=V,
                                                                        k=k))(k)
  results, features = {}, {}
  for i, (name, fn) in enumerate(samplers.items()):
    run = jax.jit(fn)
    rng = jax.random.PRNGKey(seed * 1000 + 10 * i)
    with jax.enable_x64("float64" in name):   # 64-bit uniforms for the noise (parameters stay float32)
      jax.block_until_ready(run(x0, jax.random.PRNGKey(123)))       # compile
      t = time.perf_counter()
      out, base_calls, adjust_calls = jax.block_until_ready(run(x0, rng))
      dt = time.perf_counter() - t
    x = np.asarray(out)
    features[name] = {"model": np.asarray(feats(jnp.asarray(x, jnp.int32))), "bigram": bigram_features(x, V)}
    results[name] = {"tokens_per_s": n * L / dt, "base_calls_per_token": float(np.mean(base_calls)) / L,
                     "adjust_calls_per_token": float(np.mean(adjust_calls)) / L, **dict(zip(("true_nll", "impossible"),
                                                                                    true_nll(T, x))),
                     "distinct_2": distinct(x, 2), "distinct_3": distinct(x, 3)}
  # One base call against one ADJUST call on the same batch (jitted, medians of 20).
  from bench.timing import median_seconds
  base_j = jax.jit(lambda x: base(x))
  adj_j = jax.jit(lambda x, h: step(x, h, None))
  _, h0 = jax.block_until_ready(base_j(x0))
  jax.block_until_ready(adj_j(x0, h0))
  base_s = median_seconds(lambda: jax.block_until_ready(base_j(x0)), 20, warmup=2)
  adjust_s = median_seconds(lambda: jax.block_until_ready(adj_j(x0, h0)), 20, warmup=2)
  ref = features["sequential"]
  for name in samplers:
    for kind in ("model", "bigram"):
      results[name][f"mauve_{kind}"] = 1.0 if name == "sequential" else float(mauve.compute_mauve(
          p_features=ref[kind], q_features=features[name][kind], device_id=-1, verbose=False).mauve)
  for name, r in results.items():
    print(json.dumps({"sampler": name, **r}))
  print(f"\nMarkov chain V = {V}, {_SUCCESSORS.value} successors, L = {L}; true entropy rate {stationary_entropy:.3f} "
        f"nats/token (+ log V / L for the start); base MDLM d = {_HIDDEN.value}: NELBO {l0:.3f} -> {l1:.3f} over "
        f"{_BASE_STEPS.value} steps; ADJUST {_ADJUST_STEPS.value} steps on {_TRAJECTORIES.value} trajectories: KL "
        f"{first['loss']:.4f} -> {last['loss']:.4f} (naive {last['naive_kl']:.4f}); {n} samples per sampler; "
        f"{platform.machine()}, {os.cpu_count()} cores; {time.time() - t0:.0f}s in all")
  print(f"one base call on {n} x {L}: {1e3 * base_s:.2f} ms; one ADJUST call: {1e3 * adjust_s:.2f} ms "
        f"({adjust_s / base_s:.2f} of a base call)")
  print("\n| sampler | MAUVE, model features | MAUVE, bigram features | true NLL / token | impossible bigrams "
        "| distinct-2 | distinct-3 | base calls / token | ADJUST calls / token | tokens/s |\n"
        "|---|---|---|---|---|---|---|---|---|---|")
  for name, r in results.items():
    print(f"| {name} | {r['mauve_model']:.3f} | {r['mauve_bigram']:.3f} | {r['true_nll']:.3f} | "
          f"{100 * r['impossible']:.2f}% | "
          f"{r['distinct_2']:.3f} | {r['distinct_3']:.3f} | "
          f"{r['base_calls_per_token']:.3f} | {r['adjust_calls_per_token']:.3f} | {r['tokens_per_s']:,.0f} |")
  k = max(map(int, _KS.value))
  rows = [(f"ADJUST K={k}", "sequential", "the sequential sampler"),
          (f"ADJUST K={k}", f"parallel K={k}", f"parallel K={k}, no ADJUST")]
  record.write("joint_sampling_mauve", {
      "vocab": V, "length": L, "samples": n, "successors": _SUCCESSORS.value, "entropy_rate": stationary_entropy,
      "base_nelbo": [l0, l1], "adjust_kl": [first["loss"], last["loss"]], "base_call_ms": 1e3 * base_s,
      "adjust_call_ms": 1e3 * adjust_s, "samplers": results},
      headline=[record.row(f"MDLM sampling, {n:,} x {L} tokens: {ours}", results[ours]["tokens_per_s"],
                           results[ref]["tokens_per_s"], "tokens/s", reference_name=name)
                for ours, ref, name in rows if ours in results and ref in results])


if __name__ == "__main__":
  app.run(main)
