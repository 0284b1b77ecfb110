"""ASSD against sequential decoding on a trained AS-ARM: network calls, tokens per round, wall-clock, quality.

  python -m bench.assd_speed --workdir=/tmp/asarm_default [--ks=2,3,5,8 --prompts=32 --seed=0 --seeds=0,1,2]
      [--cache] [--seq_len=256] [--dtype=bfloat16]

The model is the latest checkpoint of a `configs/asarm.py` run in --workdir (trained first if there is none: `python
launch.py --config=configs/asarm.py --workdir=...`). Protocol (the reference's): validation rows of the code corpus,
a random visible subset of int(0.05 N) + 1 positions, the rest generated along the canonical order, batch size 1,
temperature 1, the same prompts and seeds for every sampler; without --cache no KV cache on any path (every call
re-encodes the row); with --cache the cached samplers (decode/assd_cached.py: one rank-indexed key/value cache,
each call encodes only the new content tokens and the queries) run beside the uncached ones and the table adds
their speed-up over cached sequential decoding. --seq_len: rows of that many tokens (the model has RoPE
positions only, so it runs at any length; a model trained at 64 tokens sees longer rows than it was trained on).
All samplers are jitted `lax.while_loop`s, compile time excluded by a warm-up, each sequence timed with
block_until_ready, the samplers interleaved prompt by prompt. Quality: the model's own NLL per generated token of
each sampler's samples (joint_log_prob), compared with sequential decoding pairwise: for every prompt, the
difference of the two samplers' NLLs averaged over the --seeds sampler seeds, then a paired t-test over prompts
(mean difference ± SEM; both sample the same distribution, so the mean difference should be indistinguishable from
0); naive parallel sampling (all tokens from the draft marginals in one call) is the negative control.
Prints one JSON line per sampler and a Markdown table for BENCHMARKS.md.
"""
import json
import os
import statistics
import time

import numpy as np
from absl import app, flags

from bench import record

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/asarm_default", "A configs/asarm.py training workdir.")
_KS = flags.DEFINE_list("ks", ["2", "3", "5", "8"], "ASSD draft counts.")
_PROMPTS = flags.DEFINE_integer("prompts", 32, "Number of prompts (validation rows).")
_CONFIG_ARG = flags.DEFINE_string("config_arg", "", "Argument of configs/asarm.py the workdir was trained with.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the prompts (rows and visible subsets).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Sampler seeds: every prompt is decoded once per seed.")
_CACHE = flags.DEFINE_boolean("cache", False, "Also run the cached samplers (decode/assd_cached.py).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "model.dtype of every sampler (the float32-trained weights, products in this dtype; "
                           "softmax, logits and draws stay float32).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 0, "Row length N (0: the config's data.seq_len).")
_UNCACHED = flags.DEFINE_boolean("uncached", True, "Run the uncached samplers (with --cache, --nouncached skips "
                                 "them where they take too long).")


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from scipy import stats

  from bench.timing import cpu_model
  from configs import asarm
  from decode.assd import assd_sample, joint_log_prob, parallel_sample, sequential_sample
  from decode.assd_cached import assd_sample_cached, sequential_sample_cached
  from models.asarm import canonical_ranks
  from train.restore import load_trained
  from train.loop import train
  config = asarm.get_config(_CONFIG_ARG.value)
  if not os.path.isdir(os.path.join(_WORKDIR.value, "checkpoints")):
    train(config, _WORKDIR.value)
  trained_len = config.data.seq_len
  config.unlock()
  config.data.seq_len = _SEQ_LEN.value or trained_len
  config.model.dtype = _DTYPE.value
  config.lock()
  exp, step, params = load_trained(config, _WORKDIR.value)
  params = jax.device_get(params)
  N = config.data.seq_len
  it = exp.eval_iterator()
  rows = []
  while len(rows) < _PROMPTS.value:
    rows.extend(np.asarray(next(it)["tokens"]))
  rows = np.stack(rows[:_PROMPTS.value]).astype(np.int32)
  rng = np.random.default_rng(_SEED.value)
  M = int(0.05 * N) + 1
  visible = np.zeros_like(rows, bool)
  for r in visible:
    r[rng.choice(N, M, replace=False)] = True
  rank = np.asarray(canonical_ranks(jnp.asarray(visible)))
  apply_fn, mask_id, limit = exp.family.module.apply, exp.vocab.mask_id, exp.vocab.size
  kw = dict(mask_id=mask_id, vocab_limit=limit)
  samplers = {}
  if _UNCACHED.value:
    samplers["sequential"] = lambda *a: sequential_sample(*a, **kw)
  if _CACHE.value:
    samplers["sequential (cached)"] = lambda *a: sequential_sample_cached(*a, **kw)
  samplers["parallel (negative control)"] = lambda *a: parallel_sample(*a, **kw)
  for k in _KS.value:
    if _UNCACHED.value:
      samplers[f"ASSD k={k}"] = (lambda k: lambda *a: assd_sample(*a, k=int(k), **kw))(k)
    if _CACHE.value:
      samplers[f"ASSD k={k} (cached)"] = (lambda k: lambda *a: assd_sample_cached(*a, k=int(k), **kw))(k)
  generated = N - M
  compiled = {}
  for name, fn in samplers.items():               # compile every sampler first (excluded from the timings)
    compiled[name] = fn
    jax.block_until_ready(fn(apply_fn, params, jnp.asarray(rows[:1]), jnp.asarray(rank[:1]),
                             jnp.asarray([M], jnp.int32), jax.random.PRNGKey(0)))
  seeds = [int(x) for x in _SEEDS.value]
  log = {name: {"times": [], "nfe": [], "rounds": [], "nll": np.zeros((len(rows), len(seeds)))} for name in samplers}
  for j, seed in enumerate(seeds):
    for i in range(len(rows)):                     # samplers interleaved per prompt: shared noise hits all alike
      a = (apply_fn, params, jnp.asarray(rows[i:i + 1]), jnp.asarray(rank[i:i + 1]), jnp.asarray([M], jnp.int32),
           jax.random.PRNGKey(seed * 100_003 + i))
      for name, fn in compiled.items():
        t = time.perf_counter()
        out, n_calls, n_rounds = jax.block_until_ready(fn(*a))
        log[name]["times"].append(time.perf_counter() - t)
        log[name]["nfe"].append(int(n_calls[0]))
        log[name]["rounds"].append(int(n_rounds[0]))
        log[name]["nll"][i, j] = -float(joint_log_prob(apply_fn, params, out, a[3], a[4], **kw)[0]) / generated
  results = {}
  base = "sequential" if "sequential" in log else "sequential (cached)"
  seq_nll = log[base]["nll"]
  for name, g in log.items():
    diff = (g["nll"] - seq_nll).mean(axis=1)       # per prompt, averaged over the seeds
    results[name] = {"ms_per_sequence": 1e3 * statistics.mean(g["times"]), "nfe": statistics.mean(g["nfe"]),
                     "nfe_sem": statistics.stdev(g["nfe"]) / len(g["nfe"]) ** 0.5,
                     "tokens_per_round": generated / statistics.mean(g["rounds"]),
                     "nll_per_token": float(g["nll"].mean()), "nll_diff": float(diff.mean()),
                     "nll_diff_sem": float(diff.std(ddof=1) / len(diff) ** 0.5) if name != base else 0.0,
                     "paired_p": float(stats.ttest_1samp(diff, 0.0).pvalue) if name != base else 1.0}
  seq = results[base]
  cached_seq = results.get("sequential (cached)")
  for name, r in results.items():
    r["speedup"] = seq["ms_per_sequence"] / r["ms_per_sequence"]
    if cached_seq:
      r["speedup_vs_cached_sequential"] = cached_seq["ms_per_sequence"] / r["ms_per_sequence"]
    r["tokens_per_s"] = 1e3 * generated / r["ms_per_sequence"]
    print(json.dumps({"sampler": name, **r}))
  print(f"\nmodel step {step} (trained on rows of {trained_len}), N = {N}, model.dtype {_DTYPE.value}, visible {M}, "
        f"generated {generated}, {len(rows)} prompts, batch 1, T = 1, sampler seeds {seeds}; {cpu_model()}, "
        f"jax {jax.__version__}, load average before the last sampler {os.getloadavg()[0]:.2f}")
  extra = " | speed-up vs cached sequential" if cached_seq else ""
  print(f"\n| sampler | NFE (mean ± SEM) | tokens per round | ms / sequence | tokens/s | speed-up vs {base}{extra} "
        f"| model NLL / token | NLL − {base}, paired (mean ± SEM) | paired t-test p |\n"
        f"|---|---|---|---|---|---|{'---|' if cached_seq else ''}---|---|---|")
  for name, r in results.items():
    vs_cached = f" | {r['speedup_vs_cached_sequential']:.2f}x" if cached_seq else ""
    print(f"| {name} | {r['nfe']:.1f} ± {r['nfe_sem']:.1f} | {r['tokens_per_round']:.2f} | "
          f"{r['ms_per_sequence']:.1f} | {r['tokens_per_s']:.0f} | {r['speedup']:.2f}x{vs_cached} | "
          f"{r['nll_per_token']:.3f} | {r['nll_diff']:+.4f} ± {r['nll_diff_sem']:.4f} | {r['paired_p']:.3g} |")
  k = "5" if "5" in _KS.value else _KS.value[-1]
  pairs = [(f"ASSD k={k}", "sequential", ""), (f"ASSD k={k} (cached)", "sequential (cached)", "cached ")]
  record.write("assd_speed", {"N": N, "visible": M, "generated": generated, "prompts": len(rows), "seeds": seeds,
                              "model_step": step, "trained_len": trained_len, "dtype": _DTYPE.value,
                              "samplers": results},
               headline=[record.row(f"{kind}AS-ARM decoding, N = {N}, batch 1: ASSD k={k}",
                                    results[ours]["tokens_per_s"], results[ref]["tokens_per_s"], "tokens/s",
                                    reference_name=f"{kind}sequential decoding")
                         for ours, ref, kind in pairs if ours in results and ref in results])


if __name__ == "__main__":
  app.run(main)
