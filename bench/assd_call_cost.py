"""What one cached AS-ARM call costs, and what that allows cached ASSD against cached sequential decoding.

  python -m bench.assd_call_cost [--seq_len=256 --calls=100 --rounds=5 --ks=2,3,5,8
      --tokens_per_round=1.99,2.54,3.04,3.20 --dtype=float32]

The default AS-ARM (configs/asarm.py: 4 layers, d 256, GeGLU 512, vocabulary 4,096; random weights: a call's cost
does not depend on them) at batch 1 over a rank cache of N = --seq_len slots, half of them readable. Each call shape
is one `AsArm.cached` call (decode/assd_cached.py) repeated --calls times inside one jitted `lax.fori_loop` (the
cache carried and written in place, as in the samplers), timed per round, the shapes interleaved over --rounds
rounds; the matmul peak of --dtype (train/flops.py) is measured in the same run. Shapes: the sequential step (1
pending content token + 1 query), ASSD's draft call (1 + k queries) and verify call (k - 1 drafts as content + k - 1
queries) for every k, and a sweep of equal content / query counts.

A call's forward FLOPs: every row (content or query) runs the layers' products, 2 L (4 d^2 + 3 d I), and attends
the N cache slots, 4 L N d; a query adds the tied vocabulary head, 2 d V. The script fits ms = F + FLOPs / R over
all shapes (least squares): F is the fixed cost of a call, R the rate at which extra rows are computed. Then, per
k, with tau = --tokens_per_round (measured by bench/assd_speed.py; the defaults are its N = 256 figures in
BENCHMARKS.md), the speed-up the calls alone allow, tau x seq_call / (draft_call + verify_call); the NFE bound, tau /
2 (free rows); the FLOP bound, tau x seq_FLOPs / (draft + verify FLOPs) (no fixed cost); and how much the ASSD
calls may cost for 1.4x: their mean at most tau / (1.4 x 2) times the sequential step's (1.09x at tau = 3.06),
against what they cost. Prints JSON lines and Markdown tables for BENCHMARKS.md.
"""
import json
import statistics
import time

import numpy as np
from absl import app, flags

from bench import record

_SEQ_LEN = flags.DEFINE_integer("seq_len", 256, "Cache slots N (the row length).")
_CALLS = flags.DEFINE_integer("calls", 100, "Calls per timed loop.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds (every shape once per round).")
_KS = flags.DEFINE_list("ks", ["2", "3", "5", "8"], "ASSD draft counts.")
_TAU = flags.DEFINE_list("tokens_per_round", ["1.99", "2.54", "3.04", "3.20"],
                         "ASSD tokens per round for each of --ks (bench/assd_speed.py's measurement).")
_SWEEP = flags.DEFINE_list("sweep", ["1", "2", "4", "8", "16"], "Equal content / query counts of the sweep.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "model.dtype of the calls (products and cache in this dtype; logits float32).")
_TARGET = 1.4


def call_flops(cfg, content: int, queries: int, slots: int) -> float:
  """Forward FLOPs of one cached call (products and attention; norms and softmax not counted)."""
  d, i, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
  per_row = 2 * L * (4 * d * d + 3 * d * i) + 4 * L * slots * d
  return (content + queries) * per_row + queries * 2 * d * cfg.vocab_size


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp

  from bench.timing import cpu_model
  from configs import asarm
  from models.asarm import AsArm, AsArmConfig
  from train.flops import measure_matmul_peak

  ks = [int(k) for k in _KS.value]
  taus = [float(t) for t in _TAU.value]
  if len(ks) != len(taus):
    raise SystemExit(f"--tokens_per_round has {len(taus)} values for {len(ks)} --ks; give one per k")
  c = asarm.get_config()
  c.model.dtype = _DTYPE.value
  cfg = AsArmConfig.from_config(c.model, 4096, mask_id=3)
  model, S = AsArm(cfg), _SEQ_LEN.value
  L, H, D = cfg.num_layers, cfg.num_heads, cfg.head_dim
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32), jnp.arange(8)[None],
                               jnp.zeros((1,), jnp.int32), jnp.zeros((1, 1), jnp.int32),
                               jnp.zeros((1, 1), jnp.int32))["params"]
  n = S // 2                                                   # mid-decode: ranks < n are in the cache

  def make_inputs(content: int, queries: int):
    """One call's arguments after the cache: the pending token then drafts as content, the next ranks as queries."""
    rank = jnp.arange(n - 1, n - 1 + content)[None] % S
    qrank = jnp.arange(n, n + queries)[None] % S
    return (jnp.arange(S)[None] < n - 1, (jnp.arange(content)[None] * 11 + 5) % cfg.vocab_size, rank,
            (rank * 7) % S, jnp.ones((1, content), bool), jnp.asarray([4], jnp.int32), (qrank * 7) % S, qrank)

  def call(params, k_cache, v_cache, inputs):   # params as an argument, as in the samplers (not constants)
    return model.apply({"params": params}, k_cache, v_cache, *inputs, method="cached")

  @jax.jit
  def loop(params, k_cache, v_cache, inputs):
    """--calls calls; the readable set changes every call (as in the samplers), so no mask work is hoisted."""
    def body(i, carry):
      kc, vc, readable, acc = carry
      readable = readable.at[0, n - 1].set(i % 2 == 1)
      logits, (kc, vc) = call(params, kc, vc, (readable,) + inputs[1:])
      return kc, vc, readable, acc + logits[0, 0, 0]
    return jax.lax.fori_loop(0, _CALLS.value, body, (k_cache, v_cache, inputs[0], jnp.float32(0)))

  def xla_flops(content: int, queries: int) -> float:
    """XLA's own count for one call of this shape (cost analysis of the compiled call), to check call_flops."""
    cost = jax.jit(call).lower(params, *fresh_cache(), make_inputs(content, queries)).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])

  def fresh_cache():
    keys = jax.random.split(jax.random.PRNGKey(1), 2 * L)
    dt = cfg.compute_dtype
    return (tuple(jax.random.normal(keys[i], (1, H, D, S), dt) for i in range(L)),
            tuple(jax.random.normal(keys[L + i], (1, H, S, D), dt) for i in range(L)))

  shapes = {"sequential step": (1, 1)}
  for k in ks:
    shapes[f"draft k={k}"] = (1, k)
    if k > 1:
      shapes[f"verify k={k}"] = (k - 1, k - 1)
  for r in _SWEEP.value:
    if (int(r), int(r)) not in shapes.values():
      shapes[f"sweep {r}+{r}"] = (int(r), int(r))
  inputs = {name: make_inputs(*shape) for name, shape in shapes.items()}
  compile_s = {}
  for name in shapes:                                         # compile and warm up
    t = time.perf_counter()
    jax.block_until_ready(loop(params, *fresh_cache(), inputs[name]))
    compile_s[name] = time.perf_counter() - t
  peaks, times = [], {name: [] for name in shapes}
  for _ in range(_ROUNDS.value):
    peaks.append(measure_matmul_peak(dtype=cfg.compute_dtype))
    for name in shapes:
      cache = fresh_cache()
      jax.block_until_ready(cache)
      t = time.perf_counter()
      jax.block_until_ready(loop(params, *cache, inputs[name]))
      times[name].append((time.perf_counter() - t) / _CALLS.value * 1e3)
  ms = {name: statistics.median(v) for name, v in times.items()}
  flops = {name: call_flops(cfg, *shapes[name], S) for name in shapes}
  x = np.array([flops[name] for name in shapes])
  y = np.array([ms[name] for name in shapes])
  slope, fixed = np.polyfit(x, y, 1)                           # ms per FLOP, ms
  rate = 1e3 / slope                                            # FLOP/s of the extra rows
  peak = statistics.median(peaks)

  dev = jax.devices()[0]
  print(f"# machine: {cpu_model()}, {dev.platform} ({dev.device_kind}), jax {jax.__version__}; N = {S}, "
        f"{_CALLS.value} calls per loop, medians of {_ROUNDS.value} interleaved rounds")
  print(f"# model.dtype {_DTYPE.value}; {_DTYPE.value} matmul peak per round (GFLOP/s): "
        + " / ".join(f"{p / 1e9:.0f}" for p in peaks))
  print("\n| call | content + queries | MFLOP | ms per call (median) | per round | GFLOP/s |")
  print("|---|---|---|---|---|---|")
  for name in shapes:
    p, q = shapes[name]
    print(f"| {name} | {p} + {q} | {flops[name] / 1e6:.1f} | {ms[name]:.3f} | "
          f"{' / '.join(f'{t:.3f}' for t in times[name])} | {flops[name] / ms[name] / 1e6:.0f} |")
    print(json.dumps({"call": name, "content": p, "queries": q, "mflop": flops[name] / 1e6, "ms": ms[name],
                      "ms_rounds": times[name], "compile_s": compile_s[name]}))
  checks = {shape: xla_flops(*shape) for shape in ((1, 1), (8, 8))}
  print("\nFLOP model against XLA's cost analysis of one call: " + "; ".join(
      f"{p} + {q}: {call_flops(cfg, p, q, S) / 1e6:.1f} MFLOP ours, {f / 1e6:.1f} XLA" for (p, q), f in checks.items()))
  print(f"\nFit over all calls: ms = {fixed:.3f} + FLOPs / ({rate / 1e9:.0f} GFLOP/s); the extra rows run at "
        f"{rate / peak:.0%} of the median {_DTYPE.value} peak ({peak / 1e9:.0f} GFLOP/s).")
  print(json.dumps({"fixed_ms": fixed, "row_rate_gflops": rate / 1e9, "peak_gflops": peak / 1e9}))

  print("\n| k | tokens per round | sequential ms / token | ASSD calls ms / token | calls allow | NFE bound | "
        f"FLOP bound | mean ASSD call / sequential call | at most, for {_TARGET}x |")
  print("|---|---|---|---|---|---|---|---|---|")
  seq_ms, seq_fl = ms["sequential step"], flops["sequential step"]
  per_k = {}
  for k, tau in zip(ks, taus):
    names = [f"draft k={k}"] + ([f"verify k={k}"] if k > 1 else [])
    round_ms, round_fl = sum(ms[nm] for nm in names), sum(flops[nm] for nm in names)
    calls = len(names)
    allow, nfe_bound, flop_bound = tau * seq_ms / round_ms, tau / calls, tau * seq_fl / round_fl
    rel, rel_max = round_ms / calls / seq_ms, tau / (_TARGET * calls)   # tau seq >= 1.4 calls mean_call
    print(f"| {k} | {tau:.2f} | {seq_ms:.3f} | {round_ms / tau:.3f} | {allow:.2f}x | {nfe_bound:.2f}x | "
          f"{flop_bound:.2f}x | {rel:.2f} | {rel_max:.2f} |")
    per_k[k] = {"k": k, "tokens_per_round": tau, "calls_allow": allow, "nfe_bound": nfe_bound,
                "flop_bound": flop_bound, "mean_call_over_sequential": rel, "at_most_for_target": rel_max,
                "assd_ms_per_token": round_ms / tau}
    print(json.dumps({"k": k, "tokens_per_round": tau, "calls_allow": allow, "nfe_bound": nfe_bound,
                      "flop_bound": flop_bound, "mean_call_over_sequential": rel, "at_most_for_target": rel_max}))
  k = 5 if 5 in per_k else ks[-1]
  record.write("assd_call_cost", {
      "seq_len": S, "calls": _CALLS.value, "rounds": _ROUNDS.value, "dtype": _DTYPE.value,
      "peaks_gflops": [p / 1e9 for p in peaks],
      "calls_ms": {name: {"content": shapes[name][0], "queries": shapes[name][1], "mflop": flops[name] / 1e6,
                          "ms": ms[name], "ms_rounds": times[name], "compile_s": compile_s[name]} for name in shapes},
      "xla_flops_check": {f"{p}+{q}": f for (p, q), f in checks.items()},
      "fit": {"fixed_ms": fixed, "row_rate_gflops": rate / 1e9, "peak_gflops": peak / 1e9}, "per_k": per_k},
      headline=[record.row(f"cached AS-ARM calls per generated token, N = {S}: ASSD k={k}",
                           per_k[k]["assd_ms_per_token"], seq_ms, "ms/token", higher_is_better=False,
                           reference_name="the sequential step")])


if __name__ == "__main__":
  app.run(main)
