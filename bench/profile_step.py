"""Where the trainer's compiled step spends its time: a `jax.profiler` trace of a few steps, every executed XLA
op's time summed by what it belongs to (its HLO `op_name`: layer part, forward or backward, optimiser, copies).

  python -m bench.profile_step [--config=base] [--compute_dtype=float32] [--traced_steps=2] [--top=25]

The step is bench/train_throughput.py's (the generic trainer's ahead-of-time compiled train step at that shape),
2 warm-up steps, then --traced_steps traced steps. Op times are the durations of the executed XLA:CPU ops (thunks) on
the runtime's worker threads, summed; with 2 threads they add up to about twice the wall time when both are busy,
so the shares, not the sums, compare with the step time. "layout copies" are copy / transpose ops and the fusions
XLA built around them (`copy_*` fusions: e.g. a residual cotangent summed into another layout), whatever their
op_name; ops whose op_name names no part of the step (the optimiser's among them) count as "other". Prints the
step time, MFU against the matmul peak of the dtype measured before and after the steps, a table by category and
the --top single ops (for BENCHMARKS.md).
"""
import collections
import glob
import re
import statistics
import tempfile
import time

from absl import app, flags

from bench.timing import cpu_model
from bench.train_throughput import _config

_CONFIG = flags.DEFINE_string("config", "base", "Shape: default or base (bench/train_throughput.py's).")
_DTYPE = flags.DEFINE_string("compute_dtype", "float32", "model.dtype: float32 or bfloat16.")
_STEPS = flags.DEFINE_integer("traced_steps", 2, "Traced steps.")
_TOP = flags.DEFINE_integer("top", 25, "Single ops listed.")

# (category, pattern over the op's op_name); the first match wins. Backward ops carry "transpose(" in op_name.
_PARTS = [
    ("optimiser (AdamW, clipping, schedule)", r"optax|adam|scale_by|clip|apply_updates|schedule|global_norm|"
                                            r"/update|opt_state"),
    ("loss and metrics", r"loss|cross_entropy|log_softmax|logsumexp|accuracy|metrics"),
    ("MLM head and decoder (vocabulary)", r"head|decoder|\.attend"),
    ("embeddings", r"embed"),
    ("norms", r"_norm/|final_norm|LayerNorm"),
    ("attention projections (Wqkv, Wo)", r"attn/(Wqkv|Wo|attn\._output)"),
    ("attention core (scores, softmax, weighted sum; RoPE)", r"attn/|rope|attention"),
    ("MLP (Wi, Wo, GeGLU)", r"mlp/"),
    ("residual adds and rest of the layers", r"layers_\d+"),
]


def _category(op_name: str | None, hlo_name: str, hlo_op: str) -> str:
  """Layout changes first (copies, transposes and the fusions XLA built around them: `copy_*`, `*transpose*`),
  whatever their op_name; then the part of the model or step the op_name names, forward or backward."""
  if not op_name or hlo_op in ("copy", "transpose") or hlo_name.startswith("copy") or "transpose_" in hlo_name:
    return "layout copies and transposes (XLA-inserted)"
  direction = "backward" if "transpose(" in op_name else "forward"
  for label, pattern in _PARTS:
    if re.search(pattern, op_name):
      return label if label.startswith(("optimiser", "loss")) else f"{label}, {direction}"
  return f"other, {direction}"


def main(argv):
  del argv
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from jax.profiler import ProfileData

  from train.flops import measure_matmul_peak
  from train.loop import build_experiment
  c = _config(_CONFIG.value)
  c.unlock()
  c.model.dtype = _DTYPE.value
  exp = build_experiment(c, devices=jax.devices()[:1])
  tokens = c.train.batch_size * c.data.seq_len
  peak = measure_matmul_peak(dtype=jnp.dtype(_DTYPE.value))
  trace_dir = tempfile.mkdtemp(prefix="profile_step_")
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = exp.init_state()
    step = exp.compiled_train_step()
    hlo = step.as_text()
    it = exp.train_iterator()
    batches = [exp.to_device(next(it)) for _ in range(2 + _STEPS.value)]
    for b in batches[:2]:
      state, m = step(state, b)
    jax.block_until_ready(m["loss"])
    times = []
    jax.profiler.start_trace(trace_dir)
    for b in batches[2:]:
      t = time.perf_counter()
      state, m = step(state, b)
      jax.block_until_ready(m["loss"])
      times.append(time.perf_counter() - t)
    jax.profiler.stop_trace()
  step_s = statistics.median(times)
  peak_after = measure_matmul_peak(dtype=jnp.dtype(_DTYPE.value))   # this machine's peak readings move: both
  flops = exp.family.flops_per_token(c.data.seq_len) * tokens
  op_names = {m.group(1): m.group(2) for m in re.finditer(
      r'^\s+(?:ROOT )?%([\w.\-]+) = .*?metadata=\{op_name="([^"]*)"', hlo, re.M)}
  hlo_ops = {m.group(1): m.group(2) for m in re.finditer(r'^\s+(?:ROOT )?%([\w.\-]+) = \S+ ([\w\-]+)\(', hlo, re.M)}
  path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
  by_cat, by_op = collections.Counter(), collections.Counter()
  for plane in ProfileData.from_file(path).planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLA"):      # the XLA:CPU runtime's worker threads
        continue
      for ev in line.events:
        if ev.name not in hlo_ops:              # executor bookkeeping, nested regions
          continue
        by_cat[_category(op_names.get(ev.name), ev.name, hlo_ops[ev.name])] += ev.duration_ns
        by_op[ev.name] += ev.duration_ns
  total = sum(by_cat.values())
  shape = f"{c.train.batch_size} x {c.data.seq_len}"
  print(f"\n{c.model.dtype} {_CONFIG.value} train step ({shape}): {step_s * 1e3:.0f} ms "
        f"median of {len(times)} traced steps, {tokens / step_s:,.0f} tokens/s, MFU {flops / step_s / peak:.1%} / "
        f"{flops / step_s / peak_after:.1%} against the {_DTYPE.value} matmul peak measured before / after the steps "
        f"({peak / 1e9:.0f} / {peak_after / 1e9:.0f} GFLOP/s); op time summed "
        f"over worker threads {total / 1e6 / len(times):.0f} ms per step; {cpu_model()}, jax {jax.__version__}")
  print("\n| where | share of op time | ms per step (summed over threads) |\n|---|---|---|")
  for cat, ns in by_cat.most_common():
    print(f"| {cat} | {ns / total:.1%} | {ns / 1e6 / len(times):.1f} |")
  print("\n| op | kind | share | op_name |\n|---|---|---|---|")
  for name, ns in by_op.most_common(_TOP.value):
    print(f"| {name} | {hlo_ops[name]} | {ns / total:.1%} | {(op_names.get(name) or '')[-110:]} |")


if __name__ == "__main__":
  app.run(main)
