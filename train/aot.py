"""Ahead-of-time sizing (`launch.py --mode=compile_only`): lower and compile the train and eval steps for the
configured mesh and batch without running them and without reading data, and report the compiler's per-device
memory and FLOPs beside our FLOP model and a roofline bound.

  python launch.py --config=configs/<experiment>.py --mode=compile_only --num_cpu_devices=8 \\
      --config.mesh.fsdp=8 --config.mesh.data=1 --config.train.batch_size=64 [--device_memory_gib=16]
  python launch.py --config=configs/<experiment>.py:<size> --mode=compile_only --compile_topology=v5p-16 \\
      --config.mesh.fsdp=8 --config.model.attention_impl=splash --config.model.dtype=bfloat16 ...

`--compile_topology` compiles with the real TPU compiler (libtpu, requirements-tpu.txt) for a Cloud TPU slice this
machine does not have (train/topology.py); without it, for this machine's devices.
Memory (`Compiled.memory_analysis()`, per device): arguments (state + batch), outputs, temporaries, minus what the
outputs alias (the donated state). A total above the capacity (`--device_memory_gib`, else the TPU chip table,
else `device.memory_stats()["bytes_limit"]`; unknown on CPU) stops with one line naming the keys that lower it.
FLOPs: the compiler's cost analysis of the per-device program times the device count, against the family's FLOP
model (what MFU uses); they differ by what each counts (XLA: every elementwise op and the optimiser; ours: matmuls
and attention; a Pallas kernel such as splash attention counts almost nothing in XLA's). The roofline bound is
max(FLOPs / peak, HBM bytes accessed / bandwidth) per device, with FLOPs the larger of the two counts; it ignores
communication, so a real step is slower. A SentencePiece vocabulary (data.vocab="spm") is not trained: a stand-in
of data.vocab_size ids sizes the embedding (the model reads only its size).
"""
import contextlib
import json
import re
import time
from typing import Any

import flax.linen as nn
import jax

from train.errors import ConfigError
from train.flops import PEAK_BF16_FLOPS
from train.topology import GIB, chip_of, topology_devices

# HBM bandwidth of the GPUs bench/accelerator.sh may meet (vendor figures, SXM parts), for the roofline.
GPU_HBM_BYTES_PER_S = {"NVIDIA H100": 3.35e12, "NVIDIA H200": 4.8e12, "NVIDIA A100": 2.0e12, "NVIDIA B200": 8.0e12}


ANALYSIS_KEYS = ("argument_bytes", "output_bytes", "alias_bytes", "temp_bytes", "code_bytes", "flops_per_device",
                 "hbm_bytes_per_device", "total_bytes")


def _analysis(compiled) -> dict[str, float]:
  m = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  out = {"argument_bytes": m.argument_size_in_bytes, "output_bytes": m.output_size_in_bytes,
         "alias_bytes": m.alias_size_in_bytes, "temp_bytes": m.temp_size_in_bytes,
         "code_bytes": m.generated_code_size_in_bytes, "flops_per_device": float((cost or {}).get("flops", 0.0)),
         "hbm_bytes_per_device": float((cost or {}).get("bytes accessed", 0.0))}
  out["total_bytes"] = out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + out["temp_bytes"]
  return out


def device_figures(devices, override_gib: float = 0.0) -> dict[str, Any]:
  """Per device: capacity (bytes), bf16 peak FLOP/s and HBM bandwidth (None where unknown), and devices per chip:
  the override, else the TPU chip table (train/topology.py), else the runtime's and the GPU tables."""
  chip, per_chip = chip_of(devices)
  kind = devices[0].device_kind
  if chip is not None:
    capacity, peak, bandwidth = chip.hbm_bytes / per_chip, chip.peak_bf16_flops / per_chip, \
        chip.hbm_bytes_per_s / per_chip
  else:
    try:
      capacity = (devices[0].memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 - backends without memory stats (CPU)
      capacity = None
    peak = next((p for name, p in PEAK_BF16_FLOPS.items() if kind.startswith(name)), None)
    bandwidth = next((b for name, b in GPU_HBM_BYTES_PER_S.items() if kind.startswith(name)), None)
  if override_gib:
    capacity = override_gib * GIB
  return {"capacity": capacity, "peak": peak, "bandwidth": bandwidth, "per_chip": per_chip,
          "chip": chip.name if chip else kind}


def compile_report(exp, capacity_gib: float = 0.0, topology: str = "", with_eval: bool = True) -> dict[str, Any]:
  """The sizing report of an Experiment (train.experiment.build_experiment): per-device memory of the compiled train and
  eval steps, FLOPs (compiler and model), the roofline bound; raises ConfigError when a step does not fit.
  `with_eval=False` compiles the train step only (bench/pod_sizing.py; the eval step's figures are then zeros)."""
  from train.step import make_eval_step
  c = exp.config
  devices = list(exp.mesh.devices.flat)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules), _out_of_memory_as_one_line(devices):
    t = time.perf_counter()
    train_c = exp.compiled_train_step()
    train_s = time.perf_counter() - t
    key = jax.ShapeDtypeStruct((2,), jax.numpy.uint32, sharding=exp.state_sharding.rng)
    t = time.perf_counter()
    eval_c = jax.jit(make_eval_step(exp.family)).lower(
        exp.abstract_state.params, exp.abstract_batch(c.eval.batch_size), key).compile() if with_eval else None
    eval_s = time.perf_counter() - t
  fig = device_figures(devices, capacity_gib)
  fam = exp.family
  n = len(devices)
  report = {"device_kind": devices[0].device_kind, "num_devices": n, "devices_per_chip": fig["per_chip"],
            "topology": topology, "mesh": dict(exp.mesh.shape), "batch": c.train.batch_size,
            "tokens_per_example": fam.tokens_per_example,
            "train_step": {**_analysis(train_c), "compile_s": train_s},
            "eval_step": {**(_analysis(eval_c) if eval_c else dict.fromkeys(ANALYSIS_KEYS, 0)), "compile_s": eval_s},
            "model_flops_per_step": fam.flops_per_token(fam.tokens_per_example) * c.train.batch_size
            * fam.tokens_per_example,
            "capacity_bytes_per_device": fig["capacity"]}
  train = report["train_step"]
  per_chip = fig["per_chip"]
  need = max(train["total_bytes"], report["eval_step"]["total_bytes"])
  report.update(
      total_bytes=train["total_bytes"] * per_chip, capacity_bytes=fig["capacity"] and fig["capacity"] * per_chip,
      fits=None if not fig["capacity"] else bool(need <= fig["capacity"]),
      flops_per_step=train["flops_per_device"] * n, compile_s=train_s + eval_s)
  # Roofline: the larger FLOP count (the compiler's misses Pallas kernels; ours misses elementwise work).
  flops_dev = max(train["flops_per_device"], report["model_flops_per_step"] / n)
  if fig["peak"] and fig["bandwidth"]:
    compute_s, memory_s = flops_dev / fig["peak"], train["hbm_bytes_per_device"] / fig["bandwidth"]
    report.update(roofline_step_s=max(compute_s, memory_s), roofline_bound="compute" if compute_s >= memory_s
                  else "memory", mfu_bound=report["model_flops_per_step"] / (n * fig["peak"] * max(compute_s,
                                                                                                   memory_s)))
  else:
    report.update(roofline_step_s=None, roofline_bound=None, mfu_bound=None)
  check_fits(report, fig["capacity"])
  return report


LOWER_MEMORY = ("lower --config.train.batch_size (or raise --config.train.grad_accum_steps, with "
                "train.grad_accum_unroll=False), set --config.model.remat, or shard the state with --config.mesh.fsdp "
                "(or --config.mesh.tensor)")


@contextlib.contextmanager
def _out_of_memory_as_one_line(devices):
  """The TPU compiler refuses a program whose temporaries exceed the chip's memory (RESOURCE_EXHAUSTED) before
  any report exists: one line with its figures and the keys that lower them."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    text = " ".join(str(e).split())
    if "RESOURCE_EXHAUSTED" not in text:
      raise
    figures = re.search(r"required for ([\w ]+?) \(([\d.]+\w?)\) exceeds available HBM \(([\d.]+\w?)\)", text)
    what = (f"{figures.group(1)} of {figures.group(2)}B per device, more than the {figures.group(3)}B a "
            f"{devices[0].device_kind} device has available" if figures else text[:200])
    raise ConfigError(f"the step does not fit: the compiler needs {what}; {LOWER_MEMORY}") from None


def check_fits(report: dict[str, Any], capacity: float | None) -> None:
  """One line (ConfigError) when the train or eval step needs more memory per device than `capacity` bytes."""
  need = max(report["train_step"]["total_bytes"], report["eval_step"]["total_bytes"])
  if capacity and need > capacity:
    raise ConfigError(
        f"the train step needs {need / GIB:.2f} GiB per device, more than the {capacity / GIB:.2f} GiB a "
        f"{report['device_kind']} device holds; {LOWER_MEMORY}")


def describe(report: dict[str, Any]) -> str:
  """The report as the lines compile_only prints (the JSON line follows them)."""
  cap = report["capacity_bytes_per_device"]
  where = f" ({report['topology']})" if report["topology"] else ""
  lines = [f"{report['num_devices']} x {report['device_kind']} devices{where}, mesh {report['mesh']}, batch "
           f"{report['batch']} x {report['tokens_per_example']} tokens; capacity per device: "
           f"{f'{cap / GIB:.2f} GiB' if cap else 'unknown (pass --device_memory_gib to check a target)'}"
           + (f" ({report['devices_per_chip']} devices per chip)" if report["devices_per_chip"] > 1 else "")]
  for name in ("train_step", "eval_step"):
    r = report[name]
    lines.append(f"{name}: per device arguments {r['argument_bytes'] / GIB:.3f} GiB, outputs "
                 f"{r['output_bytes'] / GIB:.3f} GiB (aliased {r['alias_bytes'] / GIB:.3f}), temporaries "
                 f"{r['temp_bytes'] / GIB:.3f} GiB, total {r['total_bytes'] / GIB:.3f} GiB"
                 + (f" ({100 * r['total_bytes'] / cap:.0f}% of capacity)" if cap else "")
                 + f"; XLA FLOPs {r['flops_per_device'] * report['num_devices']:.4g} per step (all devices); "
                 f"compiled in {r['compile_s']:.1f}s")
  lines.append(f"model FLOPs per train step (our FLOP model, as MFU counts): {report['model_flops_per_step']:.4g}")
  if report["roofline_step_s"]:
    lines.append(f"roofline lower bound on the train step: {report['roofline_step_s'] * 1e3:.2f} ms "
                 f"({report['roofline_bound']}-bound; communication not counted), at most "
                 f"{100 * report['mfu_bound']:.0f}% MFU")
  if report["fits"] is not None:
    lines.append(f"verdict: fits ({report['total_bytes'] / GIB:.2f} of {report['capacity_bytes'] / GIB:.2f} GiB "
                 "per chip)")
  return "\n".join(lines)


def compile_only(config: Any, topology: str = "", num_slices: int = 1, capacity_gib: float = 0.0) -> dict:
  """launch.py --mode=compile_only: the Experiment for this machine's devices or a TPU topology's, compiled and
  reported (printed: the lines, then one JSON line)."""
  from data.sources import sizing_vocabulary
  from train.experiment import build_experiment
  devices = topology_devices(topology, num_slices) if topology else None
  exp = build_experiment(config, devices=devices, vocab=sizing_vocabulary(config.data))
  report = compile_report(exp, capacity_gib, topology + (f" x {num_slices} slices" if num_slices > 1 else ""))
  print(describe(report), flush=True)
  print(json.dumps(report), flush=True)
  return report
