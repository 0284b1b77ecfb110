"""Wall-clock and variant helpers shared by the benchmarks (flag-free: any benchmark may import it)."""
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
  """The CPU's model name (/proc/cpuinfo) and its bfloat16 products, for the machine line of a benchmark: whether
  bfloat16 can pay on it (AMX, AVX512_BF16 or Arm BF16: native; otherwise emulated, slower than float32)."""
  from train.flops import cpu_bfloat16_products
  name = platform.processor()
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        name = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  bf16 = cpu_bfloat16_products()
  return name if bf16 is None else f"{name} (bfloat16 products: {bf16 or 'none, emulated'})"


def grad_accum_variant(v: str) -> tuple[int, bool]:
  """A --grad_accum value: 'k' = k scanned micro-batches (train.grad_accum_steps=k), 'ku' = the same unrolled
  (train.grad_accum_unroll=True)."""
  try:
    return int(v.rstrip("u")), v.endswith("u")
  except ValueError:
    raise SystemExit(f"--grad_accum={v!r}: use micro-batch counts such as 1,4u,8u (u: unrolled)") from None
