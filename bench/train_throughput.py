"""Training throughput and MFU of the generic trainer, with this machine's matmul peak measured in the same run.

  python -m bench.train_throughput [--configs=default,base] [--steps=5] [--dtype=float32,bfloat16]
      [--moment_dtype=float32,bfloat16] [--batch_size=0] [--rounds=0] [--grad_accum=1,4u]

For each config and compute dtype (`model.dtype`; parameters, optimiser, softmax and loss stay float32): the
compiled train step's median step time over --steps timed steps (after 2 warm-up steps), tokens/s, MFU =
(training FLOPs per token x tokens/s) / the measured matmul peak of that dtype (FLOPs per token from the model's
formula 6·N + 12·L·S·d, dense attention), the speed-up over float32 of the same config, and the input pipeline's
own token rate (packed batches, no model). --moment_dtype adds rows with AdamW's first moment stored in that dtype
(`optim.moment_dtype`); the optimiser state's bytes (the live state's arrays) are in the last column.
Shapes (`_config`): default, base and large (ModernBERT-base / -large, 8 x 512, vocab 50,368), gpt2_medium (the
causal LM at GPT-2-medium shape, 8 x 1024), on byte-level data: throughput depends on the shapes, not on the
tokenizer. On an accelerator MFU is against the chip's dense bf16 peak (train/flops.py's table, as MFU is quoted
there); bench/accelerator.sh runs the accelerator set.
--rounds=N (CPU) compiles every variant first, then times them in N alternated rounds, each variant right after a
fresh matmul peak of its dtype: MFU against the peak of the same minute, and ratios between variants measured
minutes apart rather than one after the other (this shared machine's speed drifts by up to 2x within an hour).
--grad_accum (with --rounds) adds variants with the step's micro-batching: k = train.grad_accum_steps=k (a scan),
ku = the same unrolled (train.grad_accum_unroll: independent branches that XLA:CPU runs concurrently); "vs first"
is the per-round ratio to the first --grad_accum value of the same shape and dtypes.
Prints a Markdown table for BENCHMARKS.md.
"""
import os
import statistics
import time

from absl import app, flags

from bench import record
from bench.timing import cpu_model, grad_accum_variant

_CONFIGS = flags.DEFINE_list("configs", ["default", "base"], "Shapes: default, base, large, gpt2_medium.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "train.batch_size for every shape (0: the shape's own).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per config.")
_DTYPE = flags.DEFINE_list("dtype", ["float32"], "Compute dtypes to measure (model.dtype): float32, bfloat16.")
_MOMENT = flags.DEFINE_list("moment_dtype", ["float32"], "optim.moment_dtype values to measure: float32, bfloat16.")
_ROUNDS = flags.DEFINE_integer("rounds", 0, "0: one pass, variant after variant. N > 0: every variant compiled once, "
                               "then N alternated rounds, each variant's MFU against a peak measured right before it "
                               "in the same round (`interleaved`).")
_ACCUM = flags.DEFINE_list("grad_accum", ["1"], "With --rounds: micro-batching variants, k = train.grad_accum_steps=k "
                           "(scan), ku = unrolled (train.grad_accum_unroll).")


SHAPES = ("default", "base", "large", "gpt2_medium")


def _config(name, overrides=None):
  """default: configs/modernbert_mlm.py; base / large: its ModernBERT-base / -large shapes (8 x 512); gpt2_medium:
  configs/causal_lm.py at GPT-2-medium shape (24 layers, d 1024, 16 heads, FFN 4096, vocab 50,257; 8 x 1024).
  Byte-level data throughout: throughput depends on the shapes, not on the tokenizer."""
  from configs import causal_lm, modernbert_mlm
  if name not in SHAPES:
    raise ValueError(f"--configs: unknown shape {name!r}; use one of {SHAPES}")
  if name == "gpt2_medium":
    c = causal_lm.get_config()
    c.unlock()
    m = c.model
    m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 1024, 24, 16, 4096
    m.max_position_embeddings, m.vocab_size = 1024, 50257
    c.data.seq_len, c.train.batch_size = 1024, 8
  else:
    c = modernbert_mlm.get_config(None if name == "default" else name)
    c.unlock()
  c.mesh.data = 1
  if name != "default":
    c.data.vocab = "byte"
    c.model.vocab_size = c.model.vocab_size or 50368
  for key, value in (overrides or {}).items():   # e.g. {"data.corpus": "tokenized:DIR"} (bench/data_pipeline.py)
    section, leaf = key.rsplit(".", 1)
    c[section][leaf] = value
  return c


def prepare(name: str, overrides: dict | None = None, warmup_batches: int = 2, batches: int = 5) -> dict:
  """Builds, initialises and compiles one shape's train step; returns what `time_steps` and `measure` need."""
  import flax.linen as nn
  import jax
  from train.experiment import build_experiment
  c = _config(name, overrides)
  exp = build_experiment(c, devices=jax.devices()[:1])
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = exp.init_state()
    t = time.perf_counter()
    step = exp.compiled_train_step()
    compile_s = time.perf_counter() - t
    it = exp.train_iterator()
    device_batches = [exp.to_device(next(it)) for _ in range(warmup_batches + batches)]
  tokens = c.train.batch_size * c.data.seq_len
  return dict(name=name, config=c, exp=exp, step=step, state=state, batches=device_batches, warmup=warmup_batches,
              compile_s=compile_s, tokens=tokens, flops=exp.family.flops_per_token(c.data.seq_len) * tokens)


def time_steps(run: dict, warmup: bool = True) -> float:
  """Median wall time of the prepared step over its batches (the first `run['warmup']` untimed when `warmup`)."""
  import jax
  times = []
  with jax.set_mesh(run["exp"].mesh):
    for i, b in enumerate(run["batches"]):
      if i < run["warmup"] and not warmup:
        continue
      t = time.perf_counter()
      run["state"], m = run["step"](run["state"], b)
      jax.block_until_ready(m["loss"])
      if i >= run["warmup"]:
        times.append(time.perf_counter() - t)
  return statistics.median(times)


def _row(run: dict, step_s: float, peak: float) -> dict:
  import jax
  c, exp = run["config"], run["exp"]
  params = sum(int(x.size) for x in jax.tree.leaves(exp.abstract_state.params))
  opt_bytes = sum(int(x.nbytes) for x in jax.tree.leaves(run["state"].opt_state))
  return dict(name=run["name"], dtype=c.model.dtype, moment_dtype=c.optim.moment_dtype, opt_bytes=opt_bytes,
              params=params, batch=c.train.batch_size, seq=c.data.seq_len, compile_s=run["compile_s"],
              step_s=step_s, tps=run["tokens"] / step_s, gflops=run["flops"] / step_s / 1e9,
              mfu=run["flops"] / step_s / peak)


def measure(name: str, steps: int, peak: float, overrides: dict | None = None) -> dict:
  """One shape's median step time over `steps` timed steps (after 2 warm-up steps), MFU against `peak`, and the
  input pipeline's own token rate (packed, batched numpy batches for the same shapes, no model)."""
  run = prepare(name, overrides, batches=steps)
  row = _row(run, time_steps(run), peak)
  it = run["exp"].train_iterator()
  next(it)
  n, t = 0, time.perf_counter()
  while time.perf_counter() - t < 3.0:
    next(it)
    n += 1
  row["pipeline_tps"] = n * run["tokens"] / (time.perf_counter() - t)
  return row


def interleaved(names, dtypes, moments, steps: int, rounds: int, batch: dict, accums=("1",)) -> list[dict]:
  """All variants compiled once, then `rounds` rounds: in each, every variant's steps are timed right after a fresh
  matmul peak of its dtype, so a round's MFU divides by the peak of the same minute (this shared machine's float32
  peak has read 164-363 GFLOP/s on different days and swings within a run). Returns one row per variant: median
  step time, median per-round MFU with its range, median per-round ratio to the same shape's float32 step."""
  import jax.numpy as jnp
  from train.flops import measure_matmul_peak
  runs = []
  for name in names:
    for dtype in dtypes:
      for moment in moments:
        for a in accums:
          k, unroll = grad_accum_variant(a)
          runs.append(dict(prepare(name, {"model.dtype": dtype, "optim.moment_dtype": moment, **batch,
                                          "train.grad_accum_steps": k, "train.grad_accum_unroll": unroll},
                                   batches=steps), accum=a))
  for run in runs:
    time_steps(run)                                  # first-call costs out of the rounds
  per_round = [[] for _ in runs]                     # (step_s, peak) per round
  for _ in range(rounds):
    for i, run in enumerate(runs):
      peak = measure_matmul_peak(dtype=jnp.dtype(run["config"].model.dtype))
      per_round[i].append((time_steps(run, warmup=False), peak))
  base = {run["name"]: i for i, run in enumerate(runs)
          if run["config"].model.dtype == run["config"].optim.moment_dtype == "float32" and run["accum"] == accums[0]}
  first = {(run["name"], run["config"].model.dtype, run["config"].optim.moment_dtype): i
           for i, run in reversed(list(enumerate(runs)))}
  rows = []
  for i, run in enumerate(runs):
    steps_s = [s for s, _ in per_round[i]]
    mfus = [run["flops"] / s / p for s, p in per_round[i]]
    row = _row(run, statistics.median(steps_s), statistics.median(p for _, p in per_round[i]))
    row.update(mfu=statistics.median(mfus), mfu_range=(min(mfus), max(mfus)),
               peaks=[p for _, p in per_round[i]], round_steps=steps_s)
    j = base.get(run["name"])
    if j is not None:
      row["vs_f32"] = statistics.median(per_round[j][r][0] / s for r, s in enumerate(steps_s))
    j = first[(run["name"], run["config"].model.dtype, run["config"].optim.moment_dtype)]
    row.update(accum=run["accum"], compile_s=run["compile_s"],
               vs_first=statistics.median(per_round[j][r][0] / s for r, s in enumerate(steps_s)))
    rows.append(row)
  return rows


def _print_interleaved(rows, rounds, steps):
  print(f"{rounds} rounds, in each round every variant's {steps} timed steps right after a fresh matmul peak of "
        "its dtype; medians over rounds (MFU: the median of per-round MFUs, range in brackets; vs float32: the "
        "median of per-round ratios)\n")
  print("| config | dtype | moments | grad accum | compile (s) | batch x seq | step (s) | tokens/s | vs float32 | "
        "vs first grad accum | model GFLOP/s | MFU against the same round's peak | peak per round (GFLOP/s) | "
        "step per round (s) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    ratio = f"{r['vs_f32']:.2f}x" if "vs_f32" in r else "-"
    lo, hi = r["mfu_range"]
    peaks = " / ".join(f"{p / 1e9:.0f}" for p in r["peaks"])
    steps = " / ".join(f"{t:.3f}" for t in r["round_steps"])
    print(f"| {r['name']} | {r['dtype']} | {r['moment_dtype']} | {r['accum']} | {r['compile_s']:.1f} | "
          f"{r['batch']} x {r['seq']} | {r['step_s']:.3f} | {r['tps']:,.0f} | {ratio} | {r['vs_first']:.2f}x | "
          f"{r['gflops']:.1f} | {100 * r['mfu']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) | "
          f"{peaks} | {steps} |")


def _record(rows: list[dict], peak_of, peak_name: str, **extra) -> None:
  """bench/results/train_throughput.json: every row, and the headline of the base shape (else the first): its
  float32 step's model FLOP/s against the matmul peak (about its MFU) and its bfloat16 tokens/s against float32.
  peak_of(row) -> the peak (FLOP/s) that row's MFU divides by; peak_name: its name, "{dtype}" filled in."""
  name = "base" if any(r["name"] == "base" for r in rows) else rows[0]["name"]
  mine = [r for r in rows if r["name"] == name and r["moment_dtype"] == "float32"
          and r.get("accum", "1") == rows[0].get("accum", "1")] or [r for r in rows if r["name"] == name]
  by_dtype = {r["dtype"]: r for r in reversed(mine)}
  first = by_dtype.get("float32", mine[0])
  headline = [record.row(f"{name} train step ({first['batch']} x {first['seq']}), {first['dtype']}: model FLOP/s",
                         first["gflops"], peak_of(first) / 1e9, "GFLOP/s",
                         reference_name=peak_name.format(dtype=first["dtype"]))]
  if "float32" in by_dtype and "bfloat16" in by_dtype:
    headline.append(record.row(f"{name} train step ({first['batch']} x {first['seq']}), bfloat16",
                               by_dtype["bfloat16"]["tps"], by_dtype["float32"]["tps"], "tokens/s",
                               reference_name="our float32 step"))
  record.write("train_throughput", {"rows": rows, **extra}, headline=headline)


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from train.flops import measure_matmul_peak, total_peak_flops
  for v in _ACCUM.value:            # bad values: one line before anything runs
    grad_accum_variant(v)
  if _ACCUM.value != ["1"] and _ROUNDS.value <= 0:
    raise SystemExit("--grad_accum compares variants in alternated rounds: add --rounds=N (N > 0)")
  load = os.getloadavg()[0]
  peak32 = measure_matmul_peak(dtype=jnp.float32)
  peak16 = measure_matmul_peak(dtype=jnp.bfloat16)
  peaks = {"float32": peak32, "bfloat16": peak16}
  device = jax.devices()[0]
  if device.platform != "cpu":     # accelerators: MFU against the chip's dense bf16 peak (train/flops.py's table)
    table = total_peak_flops([device])
    if table <= 0:
      raise SystemExit(f"no bf16 peak for device kind {device.device_kind!r}: add it to train/flops.py")
    peaks = {"float32": table, "bfloat16": table}
    print(f"{device.device_kind}: MFU below is against its dense bf16 peak, {table / 1e12:.0f} TFLOP/s")
  batch = {"train.batch_size": _BATCH.value} if _BATCH.value else {}
  if _ROUNDS.value > 0:
    if device.platform != "cpu":
      raise SystemExit("--rounds: per-round peaks are for CPUs; on an accelerator use --rounds=0 (table peak)")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__}; load average before: {load:.2f}")
    rows = interleaved(_CONFIGS.value, _DTYPE.value, _MOMENT.value, _STEPS.value, _ROUNDS.value, batch, _ACCUM.value)
    _print_interleaved(rows, _ROUNDS.value, _STEPS.value)
    _record(rows, lambda r: statistics.median(r["peaks"]), "{dtype} matmul peak, median of rounds",
            rounds=_ROUNDS.value, steps=_STEPS.value, load_average_before=load)
    return
  rows = [measure(name, _STEPS.value, peaks[dtype], {"model.dtype": dtype, "optim.moment_dtype": moment, **batch})
          for name in _CONFIGS.value for dtype in _DTYPE.value for moment in _MOMENT.value]
  f32_tps = {r["name"]: r["tps"] for r in rows if r["dtype"] == r["moment_dtype"] == "float32"}
  peak32_after = measure_matmul_peak(dtype=jnp.float32)
  print(f"\nmachine: {cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.devices()[0].platform}); "
        f"load average before: {load:.2f}")
  print(f"measured matmul peak (train.flops.measure_matmul_peak, as the trainer's MFU): float32 "
        f"{peak32 / 1e9:.0f} GFLOP/s before, {peak32_after / 1e9:.0f} after; "
        f"bf16 in / f32 accumulate {peak16 / 1e9:.0f} GFLOP/s\n")
  print("| config | dtype | moments | params | batch x seq | compile (s) | step (s) | tokens/s | vs float32 | "
        "model GFLOP/s | MFU (peak of the dtype) | input pipeline tokens/s | pipeline / trainer | "
        "optimiser state (MiB) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    ratio = f"{r['tps'] / f32_tps[r['name']]:.2f}x" if r["name"] in f32_tps else "-"
    print(f"| {r['name']} | {r['dtype']} | {r['moment_dtype']} | {r['params'] / 1e6:.1f}M | "
          f"{r['batch']} x {r['seq']} | "
          f"{r['compile_s']:.1f} | {r['step_s']:.3f} | {r['tps']:,.0f} | {ratio} | {r['gflops']:.1f} | "
          f"{100 * r['mfu']:.1f}% | {r['pipeline_tps']:,.0f} | {r['pipeline_tps'] / r['tps']:.0f}x | "
          f"{r['opt_bytes'] / 2 ** 20:,.1f} |")
  on_cpu = device.platform == "cpu"
  _record(rows, lambda r: peaks[r["dtype"]], "{dtype} matmul peak, before the steps" if on_cpu else
          "the chip's dense bf16 peak",
          steps=_STEPS.value, load_average_before=load, float32_peak_after_gflops=peak32_after / 1e9,
          peaks_gflops={k: v / 1e9 for k, v in peaks.items()})


if __name__ == "__main__":
  app.run(main)
