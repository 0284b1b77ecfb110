"""Benchmark records: each script writes its figures to `bench/results/<name>.json`, with what makes them
comparable (machine, CPU flags, jax version, commit, date, the command), and `bench/headline.py` turns the records'
headline rows into the table that opens BENCHMARKS.md.

A record's `headline` is a list of rows {"what", "ours", "reference", "ratio", "unit", "higher_is_better"}: one
row per claim the benchmark makes, the reference measured in the same run (flag-free: any benchmark may import it).
"""
import datetime
import json
import os
import platform
import subprocess
import sys
from typing import Any, Sequence

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict[str, Any]:
  """CPU model, core count, the CPU flags that decide XLA:CPU's speed, accelerators seen, jax version."""
  import jax
  from bench.timing import cpu_model
  flags = set()
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("flags"):
        flags = set(line.split(":", 1)[1].split())
        break
  except OSError:
    pass
  wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
  return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_flags": sorted(f for f in wanted if f in flags),
          "devices": sorted({d.device_kind for d in jax.devices()}), "jax": jax.__version__,
          "python": platform.python_version()}


def commit() -> str:
  """The checkout's commit (with "+dirty" when the tree has uncommitted changes), '' outside git."""
  root = os.path.dirname(RESULTS)
  try:
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                           text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return ""


def row(what: str, ours: float, reference: float, unit: str, *, higher_is_better: bool = True,
        reference_name: str = "") -> dict[str, Any]:
  """One headline row: ours and the reference measured in the same run, and their ratio (ours / reference)."""
  return {"what": what, "ours": ours, "reference": reference, "reference_name": reference_name, "unit": unit,
          "ratio": ours / reference if reference else None, "higher_is_better": higher_is_better}


def write(name: str, figures: Any, headline: Sequence[dict[str, Any]] = (), *, note: str = "",
          argv: Sequence[str] | None = None) -> str:
  """bench/results/<name>.json: {name, date, commit, command, machine, headline, figures, note}; returns the path."""
  os.makedirs(RESULTS, exist_ok=True)
  argv = list(sys.argv if argv is None else argv)
  script = os.path.abspath(argv[0]) if argv else ""
  head = (f"python -m bench.{os.path.basename(script).removesuffix('.py')}"
          if os.path.basename(os.path.dirname(script)) == "bench" else f"python {argv[0] if argv else ''}")
  record = {"name": name, "date": datetime.date.today().isoformat(), "commit": commit(),
            "command": " ".join([head, *argv[1:]]),
            "machine": machine(), "headline": list(headline), "figures": figures, "note": note}
  path = os.path.join(RESULTS, f"{name}.json")
  with open(path, "w") as f:
    json.dump(record, f, indent=1, default=float)
    f.write("\n")
  print(f"wrote {path}", flush=True)
  return path
