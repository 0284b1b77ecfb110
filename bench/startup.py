"""CPU start-up of a JAX process with libtpu installed: `import jax; jax.devices()` in a fresh interpreter, three
ways, alternated over rounds: JAX's default (loads libtpu and probes for a TPU), the project's platform choice
(train/platforms.py, as launch.py and the tests make it), and libtpu hidden from the interpreter (as if it were not
installed: the reference).

  python -m bench.startup [--rounds=5]

Prints one line per variant (min / median / max seconds) and the medians' differences to the reference.
"""
import statistics
import subprocess
import sys
import time

from absl import app, flags

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternated rounds (one start-up of each variant per round).")

# A meta-path finder that refuses `libtpu`, installed before JAX is imported: JAX then finds no TPU library.
HIDE_LIBTPU = ("import sys\n"
               "class _NoLibtpu:\n"
               "  def find_spec(self, name, path=None, target=None):\n"
               "    if name == 'libtpu' or name.startswith('libtpu.'):\n"
               "      raise ImportError('hidden')\n"
               "sys.meta_path.insert(0, _NoLibtpu())\n")
OURS = "from train.platforms import keep_cpu_startup_fast\nkeep_cpu_startup_fast()\n"
PROBE = ("import jax\njax.devices()\n"
         "from jax._src.lib import xla_client\nprint('tpu-plugin-loaded' if xla_client.pjrt_plugin_loaded('tpu') "
         "else 'tpu-plugin-not-loaded')\n")
VARIANTS = {"default": PROBE, "project": OURS + PROBE, "without libtpu": HIDE_LIBTPU + PROBE}


def start_up(code: str, env: dict | None = None) -> tuple[float, str]:
  """Seconds for a fresh interpreter to run `code` (which ends by printing whether libtpu's plugin loaded)."""
  t = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
  return time.perf_counter() - t, out.stdout.strip().splitlines()[-1]


def measure(rounds: int, env: dict | None = None) -> dict[str, list[float]]:
  times: dict[str, list[float]] = {k: [] for k in VARIANTS}
  for _ in range(rounds):
    for name, code in VARIANTS.items():
      times[name].append(start_up(code, env)[0])
  return times


def main(argv):
  del argv
  from bench.timing import cpu_model
  times = measure(_ROUNDS.value)
  print(f"machine: {cpu_model()}; python {sys.version.split()[0]}; {_ROUNDS.value} alternated rounds")
  ref = statistics.median(times["without libtpu"])
  for name, ts in times.items():
    med = statistics.median(ts)
    print(f"{name:>15}: min {min(ts):.2f} s, median {med:.2f} s, max {max(ts):.2f} s; median - without libtpu: "
          f"{med - ref:+.2f} s")


if __name__ == "__main__":
  app.run(main)
