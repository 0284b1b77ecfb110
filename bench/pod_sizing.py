"""The pod-sizing table (BENCHMARKS.md): each model's train step compiled by the TPU compiler for Cloud TPU slices
on this CPU machine (train/aot.py, as `launch.py --mode=compile_only --compile_topology=...`), with the mesh,
remat policy and batch that fit, per-chip memory, compile seconds, FLOPs (compiler and our model) and the roofline
MFU bound.

  python -m bench.pod_sizing [--rows=all] [--topologies=v5e-16,v5p-64,v6e-64] [--out=bench/results/pod_sizing.jsonl]
  python -m bench.pod_sizing --rows=remat      # one shape under every model.remat policy

Each row is fully sharded (mesh.data=1, mesh.fsdp=all devices) with one sequence per chip in bfloat16; a row that
does not fit with model.remat="none" is retried with "full". Every compile runs in its own process (the TPU
compiler's memory is returned between rows); a row's JSON line is appended to --out as it finishes.
"""
import json
import os
import subprocess
import sys
import time

from absl import app, flags

from bench import record

_ROWS = flags.DEFINE_string("rows", "all", "Comma-separated row names, 'all', or 'remat'.")
_TOPOLOGIES = flags.DEFINE_list("topologies", ["v5e-16", "v5p-64", "v6e-64"], "Accelerator types.")
_OUT = flags.DEFINE_string("out", "bench/results/pod_sizing.jsonl", "JSON lines, one per compile.")
_ONE = flags.DEFINE_string("one", "", "Internal: compile one row (JSON) in this process.")
_TABLE = flags.DEFINE_bool("table", False, "Print --out's rows as the BENCHMARKS.md table and exit.")

BF16 = {"model.dtype": "bfloat16"}
ROWS = {   # name -> (config, overrides); batch and mesh are set per topology
    "modernbert_base_8k_splash": ("configs/modernbert_mlm.py:base",
                                  {**BF16, "data.seq_len": 8192, "model.attention_impl": "splash"}),
    "modernbert_base_8k_xla": ("configs/modernbert_mlm.py:base",
                               {**BF16, "data.seq_len": 8192, "model.attention_impl": "xla"}),
    "modernbert_large_8k_splash": ("configs/modernbert_mlm.py:large",
                                   {**BF16, "data.seq_len": 8192, "model.attention_impl": "splash"}),
    "modernbert_large_8k_xla": ("configs/modernbert_mlm.py:large",
                                {**BF16, "data.seq_len": 8192, "model.attention_impl": "xla"}),
    "electra_base": ("configs/electra.py:base", {**BF16, "data.seq_len": 512, "data.vocab_size": 30522}),
    "mdlm_base": ("configs/mdlm.py", {**BF16, "data.seq_len": 1024, "model.hidden_size": 768, "model.num_layers": 12,
                                      "model.num_heads": 12, "model.intermediate_size": 3072,
                                      "data.vocab_size": 32768}),
    "gpt2_medium": ("configs/causal_lm.py:gpt2_medium", {**BF16, "model.attention_impl": "splash"}),
    "gpt2_xl": ("configs/causal_lm.py:gpt2_xl", {**BF16, "model.attention_impl": "splash"}),
    "llama_1b": ("configs/causal_lm.py:llama_1b", {**BF16, "model.attention_impl": "splash"}),
    "llama_7b": ("configs/causal_lm.py:llama_7b", {**BF16, "model.attention_impl": "splash"}),
}
REMAT_ROW, REMAT_TOPOLOGY = "modernbert_base_8k_splash", "v5p-64"


def compile_one(spec: dict) -> dict:
  """Compiles one row's train step in this process: the report (train/aot.py) or {"error": one line}."""
  import importlib.util

  from train.platforms import keep_cpu_startup_fast
  keep_cpu_startup_fast()
  from data.sources import sizing_vocabulary
  from train.aot import compile_report
  from train.errors import ConfigError
  from train.experiment import build_experiment
  from train.topology import topology_devices
  path, _, arg = spec["config"].partition(":")
  module_spec = importlib.util.spec_from_file_location("_sizing_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  c = module.get_config(arg or None)
  c.unlock()
  for key, value in spec["overrides"].items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  c.lock()
  try:
    devices = topology_devices(spec["topology"])
    exp = build_experiment(c, devices=devices, vocab=sizing_vocabulary(c.data))
    return compile_report(exp, topology=spec["topology"], with_eval=False)
  except ConfigError as e:
    return {"error": str(e)}


def run_row(name: str, topology: str, remat: str, num_chips_batch: bool = True) -> dict:
  config, overrides = ROWS[name]
  from train.topology import topology_name
  shape = topology_name(topology).split(":")[1]
  chips = 1
  for s in shape.split("x"):
    chips *= int(s)
  devices = chips * (2 if topology.startswith("v4") else 1)
  spec = {"config": config, "topology": topology,
          "overrides": {**overrides, "model.remat": remat, "mesh.data": 1, "mesh.fsdp": -1, "mesh.tensor": 1,
                        "train.batch_size": devices, "eval.batch_size": devices}}
  t = time.perf_counter()
  out = subprocess.run([sys.executable, "-m", "bench.pod_sizing", f"--one={json.dumps(spec)}"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
  lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
  result = json.loads(lines[-1]) if lines else {"error": " ".join(out.stderr.split())[-300:]}
  return {"row": name, "config": config, "topology": topology, "remat": remat, "batch": devices,
          "wall_s": time.perf_counter() - t, **result}


def main(argv):
  del argv
  if _ONE.value:
    print(json.dumps(compile_one(json.loads(_ONE.value))), flush=True)
    return
  if _TABLE.value:
    print(table([json.loads(line) for line in open(_OUT.value)]))
    return
  if _ROWS.value == "remat":
    jobs = [(REMAT_ROW, REMAT_TOPOLOGY, p) for p in ("none", "full", "dots_saveable", "offload")]
  else:
    names = list(ROWS) if _ROWS.value == "all" else _ROWS.value.split(",")
    unknown = set(names) - set(ROWS)
    if unknown:
      raise SystemExit(f"--rows: unknown {sorted(unknown)}; use 'all', 'remat' or some of {list(ROWS)}")
    jobs = [(n, t, None) for n in names for t in _TOPOLOGIES.value]
  os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
  for name, topology, remat in jobs:
    r = run_row(name, topology, remat or "none")
    if remat is None and "does not fit" in r.get("error", "") + str(r.get("fits")):
      r = run_row(name, topology, "full")
    with open(_OUT.value, "a") as f:
      f.write(json.dumps(r) + "\n")
    print(summary(r), flush=True)
  _record([json.loads(line) for line in open(_OUT.value)])


def _record(rows: list[dict]) -> None:
  """bench/results/pod_sizing.json: every compile in --out (the last of a row / topology / remat), and the headline
  where --out has them: ModernBERT-base at 8k on v5p-64, splash against dense attention (per-chip memory, roofline
  step) and model.remat="full" against "none" (per-chip memory)."""
  gib = 1 << 30
  last = {(r["row"], r["topology"], r["remat"]): r for r in rows}
  figures = {f"{k[0]} / {k[1]} / remat {k[2]}": (
      {"error": r["error"]} if "error" in r else
      {"per_chip_gib": r["total_bytes"] / gib, "capacity_gib": r["capacity_bytes"] / gib, "fits": r["fits"],
       "mesh": r["mesh"], "batch": r["batch"], "compile_s": r["train_step"]["compile_s"],
       "flops_per_step": r["flops_per_step"], "model_flops_per_step": r["model_flops_per_step"],
       "roofline_step_ms": r["roofline_step_s"] * 1e3, "roofline_bound": r["roofline_bound"],
       "mfu_bound": r["mfu_bound"]}) for k, r in last.items()}
  ok = {k: r for k, r in last.items() if "error" not in r}
  splash = ok.get((REMAT_ROW, REMAT_TOPOLOGY, "none"))
  dense = next((r for (name, t, _), r in ok.items() if name == "modernbert_base_8k_xla" and t == REMAT_TOPOLOGY),
               None)
  full = ok.get((REMAT_ROW, REMAT_TOPOLOGY, "full"))
  what = f"ModernBERT-base 8k train step, {REMAT_TOPOLOGY}"
  headline = []
  if splash and dense:
    headline += [record.row(f"{what}, splash attention: per-chip memory", splash["total_bytes"] / gib,
                            dense["total_bytes"] / gib, "GiB", higher_is_better=False,
                            reference_name=f"dense xla attention, remat {dense['remat']}"),
                 record.row(f"{what}, splash attention: roofline step", splash["roofline_step_s"] * 1e3,
                            dense["roofline_step_s"] * 1e3, "ms", higher_is_better=False,
                            reference_name=f"dense xla attention, remat {dense['remat']}")]
  if splash and full:
    headline.append(record.row(f"{what}, splash, remat full: per-chip memory", full["total_bytes"] / gib,
                               splash["total_bytes"] / gib, "GiB", higher_is_better=False,
                               reference_name="remat none"))
  record.write("pod_sizing", figures, headline=headline,
               note=f"compiled for TPU topologies on this CPU machine; every row of {_OUT.value}")


def table(rows: list[dict]) -> str:
  """Markdown: one line per compile (the last of a row / topology / remat wins)."""
  gib = 1 << 30
  last = {(r["row"], r["topology"], r["remat"]): r for r in rows}
  out = ["| model | topology | mesh (data x fsdp x tensor) | remat | batch (seqs) | per-chip memory (GiB) | fits | "
         "compile (s) | FLOPs/step: compiler / model | roofline step (ms) | MFU bound |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in last.values():
    if "error" in r:
      out.append(f"| {r['row']} | {r['topology']} | | {r['remat']} | {r['batch']} | {r['error'][:90]} | no | | | | |")
      continue
    mesh = "x".join(str(r["mesh"][a]) for a in ("data", "fsdp", "tensor"))
    out.append(f"| {r['row']} | {r['topology']} | {mesh} | {r['remat']} | {r['batch']} | "
               f"{r['total_bytes'] / gib:.1f} of {r['capacity_bytes'] / gib:.0f} | {'yes' if r['fits'] else 'no'} | "
               f"{r['train_step']['compile_s']:.0f} | {r['flops_per_step']:.3g} / {r['model_flops_per_step']:.3g} | "
               f"{r['roofline_step_s'] * 1e3:.0f} ({r['roofline_bound']}) | {100 * r['mfu_bound']:.0f}% |")
  return "\n".join(out)


def summary(r: dict) -> str:
  gib = 1 << 30
  head = f"{r['row']} | {r['topology']} | remat {r['remat']} | batch {r['batch']}"
  if "error" in r:
    return f"{head} | {r['error'][:160]}"
  return (f"{head} | {r['total_bytes'] / gib:.1f} / {r['capacity_bytes'] / gib:.0f} GiB per chip | fits {r['fits']} | "
          f"compile {r['train_step']['compile_s']:.0f} s | FLOPs XLA {r['flops_per_step']:.3g} model "
          f"{r['model_flops_per_step']:.3g} | roofline {r['roofline_step_s'] * 1e3:.0f} ms "
          f"({r['roofline_bound']}) | MFU bound {100 * r['mfu_bound']:.0f}%")


if __name__ == "__main__":
  app.run(main)
