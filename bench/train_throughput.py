"""Training throughput and MFU of the generic trainer, with this machine's matmul peak measured in the same run.

  python -m bench.train_throughput [--configs=default,base] [--steps=5] [--dtype=float32,bfloat16]
      [--moment_dtype=float32,bfloat16] [--batch_size=0]

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
Prints a Markdown table for BENCHMARKS.md.
"""
import os
import statistics
import time

from absl import app, flags

from bench.timing import cpu_model

_CONFIGS = flags.DEFINE_list("configs", ["default", "base"], "Shapes: default, base, large, gpt2_medium.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "train.batch_size for every shape (0: the shape's own).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per config.")
_DTYPE = flags.DEFINE_list("dtype", ["float32"], "Compute dtypes to measure (model.dtype): float32, bfloat16.")
_MOMENT = flags.DEFINE_list("moment_dtype", ["float32"], "optim.moment_dtype values to measure: float32, bfloat16.")


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


def measure(name: str, steps: int, peak: float, overrides: dict | None = None) -> dict:
  import flax.linen as nn
  import jax
  from train.loop import build_experiment
  c = _config(name, overrides)
  exp = build_experiment(c, devices=jax.devices()[:1])
  tokens = c.train.batch_size * c.data.seq_len
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = exp.init_state()
    t = time.perf_counter()
    step = exp.compiled_train_step()
    compile_s = time.perf_counter() - t
    it = exp.train_iterator()
    batches = [exp.to_device(next(it)) for _ in range(steps + 2)]
    times = []
    for i, b in enumerate(batches):
      t = time.perf_counter()
      state, m = step(state, b)
      jax.block_until_ready(m["loss"])
      if i >= 2:
        times.append(time.perf_counter() - t)
  step_s = statistics.median(times)
  flops = exp.family.flops_per_token(c.data.seq_len) * tokens
  # The input pipeline alone: packed, batched numpy batches for the same shapes.
  it = exp.train_iterator()
  next(it)
  n, t = 0, time.perf_counter()
  while time.perf_counter() - t < 3.0:
    next(it)
    n += 1
  pipeline_tps = n * tokens / (time.perf_counter() - t)
  params = sum(int(x.size) for x in jax.tree.leaves(exp.abstract_state.params))
  opt_bytes = sum(int(x.nbytes) for x in jax.tree.leaves(state.opt_state))
  return dict(name=name, dtype=c.model.dtype, moment_dtype=c.optim.moment_dtype, opt_bytes=opt_bytes, params=params,
              batch=c.train.batch_size, seq=c.data.seq_len, compile_s=compile_s,
              step_s=step_s, tps=tokens / step_s, gflops=flops / step_s / 1e9, mfu=flops / step_s / peak,
              pipeline_tps=pipeline_tps)


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from train.flops import measure_matmul_peak, total_peak_flops
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


if __name__ == "__main__":
  app.run(main)
