"""ASSD against sequential decoding on a trained AS-ARM: network calls, tokens per round, wall-clock, quality.

  python -m bench.assd_speed --workdir=/tmp/asarm_default [--ks=2,3,5,8 --prompts=32 --seed=0 --seeds=0,1,2]

The model is the latest checkpoint of a `configs/asarm.py` run in --workdir (trained first if there is none: `python
launch.py --config=configs/asarm.py --workdir=...`). Protocol (the reference's): validation rows of the code corpus,
a random visible subset of int(0.05 N) + 1 positions, the rest generated along the canonical order, batch size 1,
temperature 1, the same prompts and seeds for every sampler; no KV cache on any path (every call re-encodes the
row), both samplers jitted `lax.while_loop`s, compile time excluded by a warm-up, each sequence timed with
block_until_ready, the samplers interleaved prompt by prompt. Quality: the model's own NLL per generated token of
each sampler's samples (joint_log_prob), compared with sequential decoding pairwise: for every prompt, the
difference of the two samplers' NLLs averaged over the --seeds sampler seeds, then a paired t-test over prompts
(mean difference ± SEM; both sample the same distribution, so the mean difference should be indistinguishable from
0); naive parallel sampling (all tokens from the draft marginals in one call) is the negative control.
Prints one JSON line per sampler and a Markdown table for BENCHMARKS.md.
"""
import json
import os
import platform
import statistics
import time

import numpy as np
from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/asarm_default", "A configs/asarm.py training workdir.")
_KS = flags.DEFINE_list("ks", ["2", "3", "5", "8"], "ASSD draft counts.")
_PROMPTS = flags.DEFINE_integer("prompts", 32, "Number of prompts (validation rows).")
_CONFIG_ARG = flags.DEFINE_string("config_arg", "", "Argument of configs/asarm.py the workdir was trained with.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the prompts (rows and visible subsets).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Sampler seeds: every prompt is decoded once per seed.")


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from scipy import stats

  from configs import asarm
  from decode.assd import assd_sample, joint_log_prob, parallel_sample, sequential_sample
  from models.asarm import canonical_ranks
  from train.loop import load_trained, train
  config = asarm.get_config(_CONFIG_ARG.value)
  if not os.path.isdir(os.path.join(_WORKDIR.value, "checkpoints")):
    train(config, _WORKDIR.value)
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
  samplers = {"sequential": lambda *a: sequential_sample(*a, **kw),
              "parallel (negative control)": lambda *a: parallel_sample(*a, **kw)}
  for k in _KS.value:
    samplers[f"ASSD k={k}"] = (lambda k: lambda *a: assd_sample(*a, k=int(k), **kw))(k)
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
  seq_nll = log["sequential"]["nll"]
  for name, g in log.items():
    diff = (g["nll"] - seq_nll).mean(axis=1)       # per prompt, averaged over the seeds
    results[name] = {"ms_per_sequence": 1e3 * statistics.mean(g["times"]), "nfe": statistics.mean(g["nfe"]),
                     "nfe_sem": statistics.stdev(g["nfe"]) / len(g["nfe"]) ** 0.5,
                     "tokens_per_round": generated / statistics.mean(g["rounds"]),
                     "nll_per_token": float(g["nll"].mean()), "nll_diff": float(diff.mean()),
                     "nll_diff_sem": float(diff.std(ddof=1) / len(diff) ** 0.5) if name != "sequential" else 0.0,
                     "paired_p": float(stats.ttest_1samp(diff, 0.0).pvalue) if name != "sequential" else 1.0}
  seq = results["sequential"]
  for name, r in results.items():
    r["speedup"] = seq["ms_per_sequence"] / r["ms_per_sequence"]
    print(json.dumps({"sampler": name, **r}))
  print(f"\nmodel step {step}, N = {N}, visible {M}, generated {generated}, {len(rows)} prompts, batch 1, "
        f"T = 1, sampler seeds {seeds}; {platform.machine()}, load average before the last sampler "
        f"{os.getloadavg()[0]:.2f}")
  print("\n| sampler | NFE (mean ± SEM) | tokens per round | ms / sequence | speed-up vs sequential "
        "| model NLL / token | NLL − sequential, paired (mean ± SEM) | paired t-test p |\n"
        "|---|---|---|---|---|---|---|---|")
  for name, r in results.items():
    print(f"| {name} | {r['nfe']:.1f} ± {r['nfe_sem']:.1f} | {r['tokens_per_round']:.2f} | "
          f"{r['ms_per_sequence']:.1f} | {r['speedup']:.2f}x | {r['nll_per_token']:.3f} | "
          f"{r['nll_diff']:+.4f} ± {r['nll_diff_sem']:.4f} | {r['paired_p']:.3g} |")


if __name__ == "__main__":
  app.run(main)
