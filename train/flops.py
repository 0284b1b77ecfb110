"""Peak FLOP/s for MFU: a table for accelerators, a measurement for CPUs."""
import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Dense bf16 peak per chip (vendor figures). MFU on accelerators is reported against these.
PEAK_BF16_FLOPS = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
    "TPU v6 lite": 918e12, "TPU v6e": 918e12,
    "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12, "NVIDIA B200": 2250e12,
}


# One way of measuring the CPU peak, shared by the trainer's MFU and every benchmark (a smaller matrix reads lower
# and would inflate MFU): the median of PEAK_REPEATS jitted PEAK_N x PEAK_N matmuls.
PEAK_N, PEAK_REPEATS = 2048, 5


def measure_matmul_peak(n: int = PEAK_N, dtype=jnp.float32, repeats: int = PEAK_REPEATS,
                        device: jax.Device | None = None) -> float:
  """Median FLOP/s of a jitted n x n matmul on one device (on CPU: all cores of the process)."""
  device = device or jax.devices()[0]
  a = jax.device_put(jnp.ones((n, n), dtype), device)
  b = jax.device_put(jnp.ones((n, n), dtype), device)
  f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  f(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / float(np.median(times))


@functools.lru_cache(maxsize=None)
def total_peak_flops(devices: Sequence[jax.Device], per_device: float = 0.0, compute_dtype: str = "float32") -> float:
  """Peak FLOP/s of the devices this run uses: configured, else the table (bf16, whatever the run's dtype, as
  MFU is usually quoted on accelerators), else (CPU) a measurement of products of the run's compute dtype
  (bfloat16 operands with float32 accumulation run about 2-4x the float32 rate on CPUs with AVX-512 BF16 / AMX,
  so a bfloat16 run measured against the float32 peak would overstate its MFU)."""
  if per_device > 0:
    return per_device * len(devices)
  kind = devices[0].device_kind
  for name, peak in PEAK_BF16_FLOPS.items():
    if kind.startswith(name):
      return peak * len(devices)
  if devices[0].platform == "cpu":  # simulated CPU devices share the same cores: the machine's peak counts once
    return measure_matmul_peak(dtype=jnp.dtype(compute_dtype), device=devices[0])
  return 0.0


# /proc/cpuinfo flags of native bfloat16 products, strongest first: Intel AMX-BF16; AVX512_BF16 (Intel, AMD Zen 4);
# Arm's BF16 extension (its "Features" lines, e.g. Graviton 3).
_BF16_CPU_FLAGS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16"), ("bf16", "Arm BF16"))


def cpu_bfloat16_products(cpuinfo: str | None = None) -> str | None:
  """The CPU's native bfloat16 product instructions ("AMX", "AVX512_BF16", "Arm BF16"), "" if it has none (its
  bfloat16 products are emulated), None if /proc/cpuinfo (or `cpuinfo`, for tests) lists no flags at all."""
  if cpuinfo is None:
    try:
      with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    except OSError:
      return None          # not Linux: nothing to go by
  flags = {w for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))
           for w in line.split(":", 1)[-1].split()}
  if not flags:
    return None
  return next((name for flag, name in _BF16_CPU_FLAGS if flag in flags), "")


def cpu_16bit_note(devices: Sequence[jax.Device], compute_dtype: str, cpuinfo: str | None = None) -> str | None:
  """One line for the run's log when model.dtype is 16-bit on a CPU whose products in that dtype are emulated
  (float16 always; bfloat16 when `cpu_bfloat16_products` finds none), else None. There 16-bit runs slower than
  float32: on an AMD EPYC (Zen 3, AVX2) the default config's bfloat16 train step ran 0.76x the float32 one
  (BENCHMARKS.md). A note, not an error: the run means the same, only slower. `cpuinfo` replaces the file (tests)."""
  if devices[0].platform != "cpu" or compute_dtype not in ("bfloat16", "float16"):
    return None
  if compute_dtype == "bfloat16":
    if cpu_bfloat16_products(cpuinfo) != "":
      return None
    why = "this CPU has no bfloat16 products (none of amx_bf16, avx512_bf16, bf16 in /proc/cpuinfo)"
  else:
    why = "XLA:CPU emulates float16 products"
  return (f"model.dtype={compute_dtype}: {why}, so this run is likely slower than with model.dtype=float32 "
          f"(BENCHMARKS.md: 0.76x on an AVX2 CPU)")
