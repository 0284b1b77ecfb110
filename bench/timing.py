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
  """The CPU's model name (/proc/cpuinfo), for the machine line of a benchmark."""
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()
