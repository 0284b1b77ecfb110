"""The one mode dispatcher: what `launch.py --mode=...` runs, given the command line's config, workdir and flags.

  train         `config` (written to a fresh workdir), or, when the command line named no --config and the workdir
                holds a run, that run's stored config with the changeable overrides (train/stored_config.py)
  eval          the workdir's latest checkpoint under its stored config: the mean metrics (eval_results.jsonl) and
                the family's evaluations (analysis.jsonl)
  follow        eval of each new checkpoint of a running trainer (train/follow.py)
  decode        the family's decode hook on --text or the config's decode.prompts
  compile_only  per-device memory and FLOPs of the compiled steps, for this host or a Cloud TPU topology (aot.py)
  import_hf / export_hf   Hugging Face directories <-> a workdir (train/hf_convert.py)
"""
import json
from typing import Any, Sequence

import flax.linen as nn
import jax

from train import stored_config
from train.errors import ConfigError
from train.evaluation import evaluate, run_evals
from train.experiment import build_experiment
from train.reporting import append_jsonl
from train.restore import restore_latest

MODES = ("train", "eval", "follow", "decode", "compile_only", "import_hf", "export_hf")


def run(config: Any, workdir: str, mode: str = "train", *, overrides: dict[str, Any] | None = None,
        config_given: bool = True, text: str = "", hf_dirs: Sequence[str] = (), follow_poll_s: float = 5.0,
        follow_timeout_s: float = 3600.0, topology: str = "", topology_slices: int = 1,
        device_memory_gib: float = 0.0) -> Any:
  """Runs `mode` (module docstring); `overrides` are the command line's --config.* values."""
  overrides = overrides or {}
  if mode == "train":
    from train.loop import train
    if not config_given:
      config = stored_config.resumed_config(workdir, overrides) or config
    return train(stored_config.adopt_init_from(config, overrides), workdir)
  if mode in ("eval", "decode"):
    config = stored_config.eval_config(stored_config.stored_run_config(workdir), overrides, mode)
    return (eval_workdir if mode == "eval" else decode_workdir)(config, workdir, text)
  if mode == "follow":
    from train.follow import follow
    return follow(workdir, overrides, poll_s=follow_poll_s, timeout_s=follow_timeout_s)
  if mode == "compile_only":
    from train.aot import compile_only
    return compile_only(config, topology, topology_slices, device_memory_gib)
  if mode in ("import_hf", "export_hf"):
    from train.hf_convert import export_hf, import_hf
    if not hf_dirs:
      raise ConfigError(f"--mode={mode} needs --hf_dir=PATH")
    msg = import_hf(config, list(hf_dirs), workdir) if mode == "import_hf" else export_hf(workdir, hf_dirs[0])
    print(json.dumps({"ok": True, "message": msg}), flush=True)
    return msg
  raise ConfigError(f"--mode={mode!r}: use one of {', '.join(MODES)}")


def eval_workdir(config: Any, workdir: str, text: str = "") -> dict[str, Any]:
  """The mean metrics of the latest checkpoint (a line and a record in eval_results.jsonl), then the family's own
  evaluations (a line and a record in analysis.jsonl), returned under "analyses"."""
  del text
  exp = build_experiment(config)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    step, params = restore_latest(exp, workdir)
    metrics = evaluate(exp, params)
    print(json.dumps({"step": step, **metrics}), flush=True)
    append_jsonl(workdir, "eval_results.jsonl", {"step": step, **metrics})
    if not exp.family.evals:
      return metrics
    results = {"step": step, **run_evals(exp.family.evals, params)}
    print(json.dumps(results), flush=True)
    append_jsonl(workdir, "analysis.jsonl", results)
    return {**metrics, "analyses": results}


def decode_workdir(config: Any, workdir: str, text: str = "") -> list[str]:
  """The family's decode hook on `text` (or the config's decode.prompts), printed input / output."""
  exp = build_experiment(config)
  if exp.family.decode is None:
    raise ConfigError(f"model.name={exp.family.name!r} has no decode mode")
  prompts = [text] if text else list(exp.family.prompts)
  if not prompts:
    raise ConfigError(f"model.name={exp.family.name!r}: the run's config has no decode.prompts; give the text to "
                      "decode with --text=...")
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    _, params = restore_latest(exp, workdir)
    try:
      outputs = exp.family.decode(params, prompts, exp.mesh)
    except ValueError as e:   # decode hooks refuse bad prompts (too long, ...) with ValueError
      raise ConfigError(str(e)) from None
  for p, o in zip(prompts, outputs):
    print(f"--- input:\n{p}\n--- output:\n{o}", flush=True)
  for note in outputs[len(prompts):]:   # a hook may report side products (files written) after the outputs
    print(note, flush=True)
  return outputs
