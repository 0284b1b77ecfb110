"""Where the trainer's compiled step spends its time: a `jax.profiler` trace of a few steps, every executed XLA
op's time summed by what it belongs to (its HLO `op_name`: layer part, forward or backward, optimiser, copies).

  python -m bench.profile_step [--config=base] [--compute_dtype=float32] [--traced_steps=2] [--top=25]
      [--replay_dots] [--replay_top=12]

The step is bench/train_throughput.py's (the generic trainer's ahead-of-time compiled train step at that shape;
--config=electra: bench/electra_throughput.py's jitted joint ELECTRA-small step, 32 x 128), 2 warm-up steps, then
--traced_steps traced steps. Op times are the durations of the executed XLA:CPU ops (thunks) on the runtime's
worker threads, summed; with 2 threads they add up to about twice the wall time when both are busy, so the shares,
not the sums, compare with the step time. "layout copies" are copy / transpose ops and the fusions XLA built around
them (`copy_*` fusions: e.g. a residual cotangent summed into another layout), whatever their op_name, except ops
with a dot (the custom VJP's backward products carry no op_name); ops whose op_name names no part of the
step (the optimiser's among them) count as "other". Prints the step time, MFU against the matmul peak of the dtype
measured before and after the steps, a table by category and the --top single ops (for BENCHMARKS.md).

--replay_dots asks what the step's products would cost in PyTorch's CPU kernels (oneDNN / MKL, what
`bench/modernbert_vs_hf.py`'s reference runs): every executed op that is or contains an HLO dot (XLA:CPU wraps most
in YNNPACK fusions, whose time then includes the elementwise work fused with the product) is grouped by the dot's
signature (operand shapes and dtypes, batch and contracting dimensions); each signature is timed alone, as a jitted
`lax.dot_general` and as the same `torch.einsum` (torch returns the operands' dtype, as under autocast; ours
accumulates bfloat16 products in float32), medians of interleaved calls. The table says how much of the step's time
is products, and how fast the same products run in the reference's kernels.
"""
import collections
import glob
import re
import statistics
import tempfile
import time

from absl import app, flags

from bench import record
from bench.timing import cpu_model
from bench.train_throughput import _config

_CONFIG = flags.DEFINE_string("config", "base", "default or base (bench/train_throughput.py's shapes, the trainer's "
                              "step), or electra (bench/electra_throughput.py's joint step).")
_DTYPE = flags.DEFINE_string("compute_dtype", "float32", "model.dtype: float32 or bfloat16.")
_STEPS = flags.DEFINE_integer("traced_steps", 2, "Traced steps.")
_TOP = flags.DEFINE_integer("top", 25, "Single ops listed.")
_REPLAY = flags.DEFINE_bool("replay_dots", False, "Time the step's dot signatures alone in XLA and in torch.")
_REPLAY_TOP = flags.DEFINE_integer("replay_top", 12, "Dot signatures listed (all are summed).")

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


def _category(op_name: str | None, hlo_name: str, hlo_op: str, has_dot: bool) -> str:
  """Layout changes first (copies, transposes and the fusions XLA built around them: `copy_*`, `*transpose*`),
  whatever their op_name; then the part of the model or step the op_name names, forward or backward. The backward
  products of the custom VJP (models/layers/matmul.py: 16-bit products, float32 dense layers on CPU) carry no
  op_name."""
  if not op_name and has_dot:
    return "custom-VJP products (backward: 16-bit, float32 dense; no op_name)"
  if not op_name or hlo_op in ("copy", "transpose") or hlo_name.startswith("copy") or "transpose_" in hlo_name:
    return "layout copies and transposes (XLA-inserted)"
  direction = "backward" if "transpose(" in op_name else "forward"
  for label, pattern in _PARTS:
    if re.search(pattern, op_name):
      return label if label.startswith(("optimiser", "loss")) else f"{label}, {direction}"
  return f"other, {direction}"


def _build(config: str, dtype: str, steps: int):
  """(run: one step to completion, the compiled step's HLO text, training FLOPs per step, tokens per step, shape)."""
  import flax.linen as nn
  import jax
  if config == "electra":     # bench/electra_throughput.py's joint step (transformers' random init, converted)
    import numpy as np

    from bench.electra_steps import RATE, V, hf_models, our_step_fn
    B, S = 32, 128
    run, _, cfg, hlo = our_step_fn(*hf_models(), np.random.default_rng(0).integers(999, V, (B, S)), B, S, dtype)
    return run, hlo, cfg.flops_per_token(S, RATE) * B * S, B * S, f"{B} x {S}"
  from train.experiment import build_experiment
  c = _config(config)
  c.unlock()
  c.model.dtype = dtype
  exp = build_experiment(c, devices=jax.devices()[:1])
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = [exp.init_state()]
    step = exp.compiled_train_step()
    it = exp.train_iterator()
    batches = [exp.to_device(next(it)) for _ in range(steps)]

  def run():
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
      state[0], m = step(state[0], batches.pop(0))
      jax.block_until_ready(m["loss"])
  tokens = c.train.batch_size * c.data.seq_len
  flops = exp.family.flops_per_token(c.data.seq_len) * tokens
  return run, step.as_text(), flops, tokens, f"{c.train.batch_size} x {c.data.seq_len}"


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from jax.profiler import ProfileData

  from train.flops import measure_matmul_peak
  run, hlo, flops, tokens, shape = _build(_CONFIG.value, _DTYPE.value, 2 + _STEPS.value)
  peak = measure_matmul_peak(dtype=jnp.dtype(_DTYPE.value))
  trace_dir = tempfile.mkdtemp(prefix="profile_step_")
  run(), run()
  times = []
  jax.profiler.start_trace(trace_dir)
  for _ in range(_STEPS.value):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
  jax.profiler.stop_trace()
  step_s = statistics.median(times)
  peak_after = measure_matmul_peak(dtype=jnp.dtype(_DTYPE.value))   # this machine's peak readings move: both
  op_names = {m.group(1): m.group(2) for m in re.finditer(
      r'^\s+(?:ROOT )?%([\w.\-]+) = .*?metadata=\{op_name="([^"]*)"', hlo, re.M)}
  hlo_ops = {m.group(1): m.group(2) for m in re.finditer(r'^\s+(?:ROOT )?%([\w.\-]+) = \S+ ([\w\-]+)\(', hlo, re.M)}
  sigs = _dot_signatures(hlo)
  path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
  by_cat, by_cat_dot, by_op, runs = (collections.Counter() for _ in range(4))
  for plane in ProfileData.from_file(path).planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLA"):      # the XLA:CPU runtime's worker threads
        continue
      for ev in line.events:
        if ev.name not in hlo_ops:              # executor bookkeeping, nested regions
          continue
        cat = _category(op_names.get(ev.name), ev.name, hlo_ops[ev.name], ev.name in sigs)
        by_cat[cat] += ev.duration_ns
        by_cat_dot[cat] += ev.duration_ns if ev.name in sigs else 0
        by_op[ev.name] += ev.duration_ns
        runs[ev.name] += 1
  total = sum(by_cat.values())
  print(f"\n{_DTYPE.value} {_CONFIG.value} train step ({shape}): {step_s * 1e3:.0f} ms "
        f"median of {len(times)} traced steps, {tokens / step_s:,.0f} tokens/s, MFU {flops / step_s / peak:.1%} / "
        f"{flops / step_s / peak_after:.1%} against the {_DTYPE.value} matmul peak measured before / after the steps "
        f"({peak / 1e9:.0f} / {peak_after / 1e9:.0f} GFLOP/s); op time summed "
        f"over worker threads {total / 1e6 / len(times):.0f} ms per step; {cpu_model()}, jax {jax.__version__}")
  print("\n| where | share of op time | ms per step (summed over threads) | of which ops with a dot |"
        "\n|---|---|---|---|")
  for cat, ns in by_cat.most_common():
    print(f"| {cat} | {ns / total:.1%} | {ns / 1e6 / len(times):.1f} | {by_cat_dot[cat] / ns:.0%} |")
  print("\n| op | kind | share | op_name |\n|---|---|---|---|")
  for name, ns in by_op.most_common(_TOP.value):
    print(f"| {name} | {hlo_ops[name]} | {ns / total:.1%} | {(op_names.get(name) or '')[-110:]} |")
  figures = {"config": _CONFIG.value, "dtype": _DTYPE.value, "shape": shape, "step_s": step_s,
             "tokens_per_s": tokens / step_s, "mfu_before": flops / step_s / peak,
             "mfu_after": flops / step_s / peak_after, "peak_gflops_before": peak / 1e9,
             "peak_gflops_after": peak_after / 1e9, "op_ms_per_step": total / 1e6 / len(times),
             "categories_ms_per_step": {cat: ns / 1e6 / len(times) for cat, ns in by_cat.most_common()},
             "top_ops": [{"op": name, "kind": hlo_ops[name], "share": ns / total, "op_name": op_names.get(name) or ""}
                         for name, ns in by_op.most_common(_TOP.value)]}
  headline = []
  if _REPLAY.value:
    figures["replay_dots"] = replay = _replay_dots(sigs, by_op, runs, total, len(times))
    headline.append(record.row(f"{_DTYPE.value} {_CONFIG.value} train step ({shape}): its products timed alone in XLA",
                               replay["xla_alone_s"], replay["torch_alone_s"], "s per step", higher_is_better=False,
                               reference_name="torch, oneDNN / MKL"))
  record.write("profile_step", figures, headline=headline)


_DIMS = ("lhs_batch_dims", "lhs_contracting_dims", "rhs_batch_dims", "rhs_contracting_dims")


def _dot_signatures(hlo: str) -> dict[str, list[tuple]]:
  """Executed op name -> the signatures of the dots it is or contains: (lhs dtype, lhs shape, rhs dtype, rhs shape,
  out dtype, the four dimension tuples)."""
  types = {m.group(1): (m.group(2), tuple(int(d) for d in m.group(3).split(",") if d))
           for m in re.finditer(r"^\s+(?:ROOT )?%([\w.\-]+) = (\w+)\[([\d,]*)\]", hlo, re.M)}
  dots_in, comp = collections.defaultdict(list), None
  calls = {}
  for line in hlo.splitlines():
    if h := re.match(r"^(?:ENTRY )?%([\w.\-]+) ", line):
      comp = h.group(1)
    if not (m := re.match(r"^\s+(?:ROOT )?%([\w.\-]+) = (\w+)\[[\d,]*\]\S* (\w+)\(", line)):
      continue
    name, out_dtype, op = m.groups()
    if c := re.search(r"calls=%([\w.\-]+)", line):
      calls[name] = c.group(1)
    if op == "dot":
      lhs, rhs = re.search(r"dot\(%([\w.\-]+), %([\w.\-]+)\)", line).groups()
      dims = tuple(tuple(int(d) for d in (re.search(rf"{k}=\{{([\d,]*)\}}", line) or [0, ""])[1].split(",") if d)
                   for k in _DIMS)
      sig = (*types[lhs], *types[rhs], out_dtype, *dims)
      dots_in[comp].append(sig)
      dots_in[f"op:{name}"].append(sig)
  return {name: dots_in[calls[name]] for name in calls if dots_in.get(calls[name])} | {
      k[3:]: v for k, v in dots_in.items() if k.startswith("op:")}


def _replay_dots(sigs: dict, by_op: collections.Counter, runs: collections.Counter, total_ns: int,
                 steps: int) -> dict:
  import jax
  import numpy as np
  import torch
  from jax import lax
  torch.set_num_threads(2)
  ours, count = collections.Counter(), collections.Counter()
  for name, ns in by_op.items():
    if name in sigs:
      for sig in sigs[name]:            # a fusion of several dots (rare) shares its time equally
        ours[sig] += ns / len(sigs[name]) / steps
        count[sig] += runs[name] / len(sigs[name])
  count = collections.Counter({s: round(n / steps) for s, n in count.items()})
  rows, sum_ours, sum_xla, sum_torch = [], 0.0, 0.0, 0.0

  def median_pair(f, g, reps=5):
    f(), g()
    rf, rg = [], []
    for _ in range(reps):
      t = time.perf_counter(); f(); rf.append(time.perf_counter() - t)
      t = time.perf_counter(); g(); rg.append(time.perf_counter() - t)
    return statistics.median(rf), statistics.median(rg)

  for sig, ns in ours.most_common():
    ldt, lsh, rdt, rsh, odt, lb, lc, rb, rc = sig
    if not {ldt, rdt, odt} <= {"f32", "bf16"}:     # integer or 8-bit products: not replayed
      continue
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    lhs_l = [next(letters) for _ in lsh]
    rhs_l = [next(letters) for _ in rsh]
    for i, j in zip(lb + lc, rb + rc):
      rhs_l[j] = lhs_l[i]
    out_l = ([lhs_l[i] for i in lb] + [x for i, x in enumerate(lhs_l) if i not in lb + lc]
             + [x for j, x in enumerate(rhs_l) if j not in rb + rc])
    spec = f"{''.join(lhs_l)},{''.join(rhs_l)}->{''.join(out_l)}"
    tdt = {"f32": torch.float32, "bf16": torch.bfloat16}[ldt]
    jdt = {"f32": np.float32, "bf16": jax.numpy.bfloat16}
    a, b = torch.randn(lsh, dtype=tdt), torch.randn(rsh, dtype=tdt)
    ja, jb = jax.numpy.ones(lsh, jdt[ldt]), jax.numpy.ones(rsh, jdt[rdt])
    f = jax.jit(lambda x, y, d=((lc, rc), (lb, rb)), o=jdt[odt]: lax.dot_general(x, y, d, preferred_element_type=o))
    t_xla, t_torch = median_pair(lambda: f(ja, jb).block_until_ready(), lambda: torch.einsum(spec, a, b))
    n = count[sig]
    sum_ours += ns / 1e9
    sum_xla += n * t_xla
    sum_torch += n * t_torch
    rows.append(f"| {ldt}[{','.join(map(str, lsh))}] x {rdt}[{','.join(map(str, rsh))}] ({spec}) -> {odt} | {n} | "
                f"{ns / 1e6:.1f} | {n * t_xla * 1e3:.1f} | {n * t_torch * 1e3:.1f} | {t_torch / t_xla:.2f} |")
  print(f"\nDots: {sum(ours.values()) / (total_ns / steps):.1%} of the step's op time, {len(ours)} signatures, "
        f"{sum(count.values())} executed per step")
  print("\n| dot signature | per step | ours in the step (ms) | XLA alone (ms) | torch alone (ms) | torch / XLA time |"
        "\n|---|---|---|---|---|---|")
  print("\n".join(rows[:_REPLAY_TOP.value]))
  print(f"| all {len(rows)} signatures | {sum(count.values())} | {sum_ours * 1e3:.0f} | {sum_xla * 1e3:.0f} | "
        f"{sum_torch * 1e3:.0f} | {sum_torch / sum_xla:.2f} |")
  return {"share_of_op_time": sum(ours.values()) / (total_ns / steps), "signatures": len(ours),
          "dots_per_step": sum(count.values()), "in_step_s": sum_ours, "xla_alone_s": sum_xla,
          "torch_alone_s": sum_torch}


if __name__ == "__main__":
  app.run(main)
