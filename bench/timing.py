"""Wall-clock helper shared by the benchmarks."""
import platform
import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
  """Median wall-clock seconds of `repeats` calls of fn after `warmup` untimed calls (fn must block until done)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def cpu_model() -> str:
  """The CPU's model name and its bfloat16 products (/proc/cpuinfo), for the machine line of a benchmark: whether
  bfloat16 can pay on it (AMX or AVX512_BF16: native; otherwise emulated, slower than float32)."""
  name, flags = None, set()
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name") and name is None:
        name = line.split(":", 1)[1].strip()
      elif line.startswith("flags") and not flags:
        flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  if name is None:
    return platform.processor()
  bf16 = "AMX" if "amx_bf16" in flags else "AVX512_BF16" if "avx512_bf16" in flags else "none, emulated"
  return f"{name} (bfloat16 products: {bf16})"
