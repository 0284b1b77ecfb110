"""Ahead-of-time sizing (`launch.py --mode=compile_only`): lower and compile the train and eval steps for the
configured mesh and batch without running them and without reading data (only the vocabulary is built), and
report XLA's per-device memory and FLOPs beside our FLOP model.

  python launch.py --config=configs/<experiment>.py --mode=compile_only --num_cpu_devices=8 \
      --config.mesh.fsdp=8 --config.mesh.data=1 --config.train.batch_size=64 [--device_memory_gib=16]

Memory (`Compiled.memory_analysis()`, per device): arguments (state + batch), outputs, temporaries, minus what the
outputs alias (the donated state). A total above the device's capacity (`device.memory_stats()["bytes_limit"]`
on GPU/TPU, or `--device_memory_gib` for a target you do not have, e.g. sizing a pod on a laptop) stops with one
line naming the keys that lower it. FLOPs: XLA's cost analysis of the compiled (per-device) program times the
device count, against the family's FLOP model (what MFU uses); they differ by what each counts (XLA: every
elementwise op and the optimiser; ours: matmuls and attention).
"""
import time
from typing import Any

import flax.linen as nn
import jax

from train.errors import ConfigError

GIB = 1 << 30


def _analysis(compiled) -> dict[str, float]:
  m = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  out = {"argument_bytes": m.argument_size_in_bytes, "output_bytes": m.output_size_in_bytes,
         "alias_bytes": m.alias_size_in_bytes, "temp_bytes": m.temp_size_in_bytes,
         "code_bytes": m.generated_code_size_in_bytes, "flops_per_device": float((cost or {}).get("flops", 0.0))}
  out["total_bytes"] = out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + out["temp_bytes"]
  return out


def device_capacity(device, override_gib: float = 0.0) -> float | None:
  """Bytes one device holds: the override, else what the runtime reports (None on CPU)."""
  if override_gib:
    return override_gib * GIB
  try:
    stats = device.memory_stats() or {}
  except Exception:  # noqa: BLE001 - backends without memory stats
    stats = {}
  return stats.get("bytes_limit")


def compile_report(exp, capacity_gib: float = 0.0) -> dict[str, Any]:
  """{"train_step": {...}, "eval_step": {...}, "devices", "capacity_bytes", "model_flops_per_step", ...} for an
  Experiment (train.loop.build_experiment); raises ConfigError when the train step does not fit."""
  from train.step import make_eval_step
  c = exp.config
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    t = time.perf_counter()
    train_c = exp.compiled_train_step()
    train_s = time.perf_counter() - t
    key = jax.ShapeDtypeStruct((2,), jax.numpy.uint32, sharding=exp.state_sharding.rng)
    t = time.perf_counter()
    eval_c = jax.jit(make_eval_step(exp.family)).lower(
        exp.abstract_state.params, exp.abstract_batch(c.eval.batch_size), key).compile()
    eval_s = time.perf_counter() - t
  devices = exp.mesh.devices.size
  fam = exp.family
  report = {"devices": int(devices), "device_kind": jax.devices()[0].device_kind,
            "mesh": dict(exp.mesh.shape), "batch": c.train.batch_size, "tokens_per_example": fam.tokens_per_example,
            "train_step": {**_analysis(train_c), "compile_s": train_s},
            "eval_step": {**_analysis(eval_c), "compile_s": eval_s},
            "model_flops_per_step": fam.flops_per_token(fam.tokens_per_example) * c.train.batch_size
            * fam.tokens_per_example}
  report["capacity_bytes"] = device_capacity(jax.devices()[0], capacity_gib)
  check_fits(report, report["capacity_bytes"])
  return report


def check_fits(report: dict[str, Any], capacity: float | None) -> None:
  """One line (ConfigError) when the train or eval step needs more memory per device than `capacity` bytes."""
  need = max(report["train_step"]["total_bytes"], report["eval_step"]["total_bytes"])
  if capacity and need > capacity:
    raise ConfigError(
        f"the train step needs {need / GIB:.2f} GiB per device, more than the {capacity / GIB:.2f} GiB a "
        f"{report['device_kind']} device holds; lower --config.train.batch_size (or raise "
        "--config.train.grad_accum_steps, with train.grad_accum_unroll=False), set --config.model.remat, or shard "
        "the state with --config.mesh.fsdp")


def describe(report: dict[str, Any]) -> str:
  """The report as the lines compile_only prints."""
  cap = report["capacity_bytes"]
  lines = [f"{report['devices']} x {report['device_kind']} devices, mesh {report['mesh']}, batch {report['batch']} "
           f"x {report['tokens_per_example']} tokens; capacity per device: "
           f"{f'{cap / GIB:.2f} GiB' if cap else 'unknown (pass --device_memory_gib to check a target)'}"]
  for name in ("train_step", "eval_step"):
    r = report[name]
    lines.append(f"{name}: per device arguments {r['argument_bytes'] / GIB:.3f} GiB, outputs "
                 f"{r['output_bytes'] / GIB:.3f} GiB (aliased {r['alias_bytes'] / GIB:.3f}), temporaries "
                 f"{r['temp_bytes'] / GIB:.3f} GiB, total {r['total_bytes'] / GIB:.3f} GiB"
                 + (f" ({100 * r['total_bytes'] / cap:.0f}% of capacity)" if cap else "")
                 + f"; XLA FLOPs {r['flops_per_device'] * report['devices']:.4g} per step (all devices); "
                 f"compiled in {r['compile_s']:.1f}s")
  lines.append(f"model FLOPs per train step (our FLOP model, as MFU counts): {report['model_flops_per_step']:.4g}")
  return "\n".join(lines)
