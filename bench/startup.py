"""CPU start-up of a JAX process with libtpu installed: `import jax; jax.devices()` in a fresh interpreter, three
ways, alternated over rounds: JAX's default (loads libtpu and probes for a TPU), the project's platform choice
(train/platforms.py, as launch.py and the tests make it), and libtpu hidden from the interpreter (as if it were not
installed: the reference).

  python -m bench.startup [--rounds=5]

Prints one line per variant (min / median / max seconds) and the medians' differences to the reference.
"""
import statistics
import sys

from absl import app, flags

from bench import record
from train.platforms import STARTUP_VARIANTS, time_startup

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternated rounds (one start-up of each variant per round).")

VARIANTS = STARTUP_VARIANTS


def measure(rounds: int, env: dict | None = None) -> dict[str, list[float]]:
  times: dict[str, list[float]] = {k: [] for k in VARIANTS}
  for _ in range(rounds):
    for name, code in VARIANTS.items():
      times[name].append(time_startup(code, env)[0])
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
  medians = {name: statistics.median(ts) for name, ts in times.items()}
  what = "CPU start-up with libtpu installed: the project's platform choice"
  record.write("startup", {"rounds": _ROUNDS.value, "median_s": medians, "seconds": times}, headline=[
      record.row(what, medians["project"], medians["without libtpu"], "s", higher_is_better=False,
                 reference_name="libtpu hidden"),
      record.row(what, medians["project"], medians["default"], "s", higher_is_better=False,
                 reference_name="JAX's default")])


if __name__ == "__main__":
  app.run(main)
