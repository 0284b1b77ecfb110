"""The workdir's stored config is the source of truth for everything after the first start of a run.

- `workdir/config.json` is written when a run starts fresh (no checkpoint yet) and never overwritten after that;
  every checkpoint also stores the config it was trained with (its meta).
- Resuming compares the command line's config with the latest checkpoint's: a difference in the model, the
  objective, the optimiser, the data (corpus, vocabulary, sequence length, packing, sharding), the seed or the
  global batch stops the run with one line listing the keys. `train.num_steps` may change (the line printed says
  what that does to the learning-rate schedule); the rest (logging, evaluation, checkpoint cadence, mesh,
  decoding) may change freely.
- `launch.py --workdir=W` with no --config resumes from the stored config (`resume_config`): command-line
  overrides of keys a resume may change are applied, an override of a key it may not change is one line naming it.
- `--mode=eval|decode` read the stored config and apply only the command-line overrides that make sense there
  (EVAL_OVERRIDABLE); any other override is refused with one line.
- `checkpoint.init_from` adopts the source run's `model.*` (adopt_init_from).
"""
import json
import os
from typing import Any, Mapping

import jax
import ml_collections

from models.hparams import RUNTIME_MODEL_KEYS
from train import checkpoint as ckpt_lib
from train.errors import ConfigError

MUST_MATCH = ("model", "objective", "optim", "data", "seed", "train.batch_size")
MUST_MATCH_EXCEPT = ("data.cache_dir", "data.seqio_modules")
EVAL_OVERRIDABLE = ("eval", "decode", "mesh", "data.cache_dir", "checkpoint", "distributed", "logical_axis_rules")


def _flat(d: Mapping, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}.{k}" if prefix else k
    if isinstance(v, Mapping):
      out.update(_flat(v, key))
    else:
      out[key] = _plain(v)
  return out


def _plain(value: Any) -> Any:
  """A config value as its stored JSON reads back (tuples as lists)."""
  return list(value) if isinstance(value, tuple) else value


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
  return any(key == p or key.startswith(p + ".") for p in prefixes)


def to_jsonable(config: Any) -> dict:
  return json.loads(json.dumps(config.to_dict(), default=str))


def from_json(d: Mapping) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(dict(d))
  c.lock()
  return c


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def write_if_fresh(config: Any, workdir: str, has_checkpoint: bool) -> None:
  """Writes config.json unless the workdir already holds a trained run (then its config stays as it was)."""
  if has_checkpoint and os.path.exists(config_path(workdir)):
    return
  os.makedirs(workdir, exist_ok=True)
  tmp = config_path(workdir) + ".tmp"
  with open(tmp, "w") as f:
    json.dump(to_jsonable(config), f, indent=2)
  os.replace(tmp, config_path(workdir))


def resume_differences(stored: Mapping, config: Any) -> tuple[list[str], list[str]]:
  """(refused differences "key: stored -> now", allowed changes worth a note) between a run's stored config and
  the config it is being resumed with."""
  old, new = _flat(stored), _flat(to_jsonable(config))
  from models.family import family_registry
  defaults = _flat(to_jsonable(family_registry().base_config()))
  refused, noted = [], []
  for key in sorted(set(old) | set(new)):
    if old.get(key) == new.get(key):
      continue
    if key not in old and key in defaults and new.get(key) == defaults[key]:
      continue   # a key added to the base config after the run started, at its default (same meaning as before)
    change = f"{key}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}"
    if _under(key, MUST_MATCH) and not _under(key, MUST_MATCH_EXCEPT):
      refused.append(change)
    elif key == "train.num_steps":
      noted.append(change)
  return refused, noted


def eval_config(stored: Mapping, overrides: Mapping[str, Any], mode: str) -> ml_collections.ConfigDict:
  """The stored config with the command line's overrides of EVAL_OVERRIDABLE keys applied."""
  refused = sorted(k for k in overrides if not _under(k, EVAL_OVERRIDABLE))
  if refused:
    raise ConfigError(f"--mode={mode} uses the run's stored config; {', '.join('--config.' + k for k in refused)} "
                      f"cannot change there (allowed: {', '.join(EVAL_OVERRIDABLE)}); train a new run to change "
                      f"{'it' if len(refused) == 1 else 'them'}")
  config = ml_collections.ConfigDict(dict(stored))
  apply_overrides(config, overrides)
  config.lock()
  return config


def resume_config(stored: Mapping, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """The stored config of a run being resumed without --config, with the command line's overrides applied where
  a resume may change them (everything but MUST_MATCH's keys, and train.num_steps); an override that would change
  a MUST_MATCH key is one line naming it (equal values are accepted)."""
  old = _flat(stored)
  refused = sorted(k for k, v in overrides.items()
                   if _under(k, MUST_MATCH) and not _under(k, MUST_MATCH_EXCEPT) and k != "train.num_steps"
                   and old.get(k) != _plain(v))
  if refused:
    changes = ", ".join(f"--config.{k} ({old.get(k, '(absent)')!r} -> {_plain(overrides[k])!r})"
                        for k in refused)
    raise ConfigError(f"resuming from the stored config: {changes} would change what the run trains; drop "
                      f"{'it' if len(refused) == 1 else 'them'}, or start a fresh --workdir")
  config = ml_collections.ConfigDict(dict(stored))
  apply_overrides(config, overrides)
  config.lock()
  return config


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
  """Sets dotted keys ("train.num_steps": 4) on an unlocked ConfigDict, as --config.a.b=value does."""
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def get(config: Any, key: str) -> Any:
  """The value at a dotted key ("train.num_steps")."""
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def stored_run_config(workdir: str) -> dict:
  """The config a workdir's latest checkpoint was trained (or imported) with."""
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  meta = ckpt.meta(step) if step is not None else {}
  ckpt.close()
  if step is None:
    raise ConfigError(f"--workdir={workdir} holds no checkpoint; train first (--mode=train)")
  if "config" not in meta:
    raise ConfigError(f"--workdir={workdir} has a checkpoint without a stored config; it was not written by "
                      "launch.py (--mode=train or --mode=import_hf)")
  return meta["config"]


def resumed_config(workdir: str, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict | None:
  """The config to resume `workdir` with when the command line names none: the latest checkpoint's (config.json
  before the first checkpoint), with the changeable `overrides` applied; None for a fresh workdir."""
  if "://" not in workdir and not os.path.isdir(workdir):
    return None
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  has_step = ckpt.latest_step() is not None
  ckpt.close()
  if has_step:
    stored = stored_run_config(workdir)
  elif os.path.exists(config_path(workdir)):
    with open(config_path(workdir)) as f:
      stored = json.load(f)
  else:
    return None
  config = resume_config(stored, overrides)
  if jax.process_index() == 0:
    print(f"resuming {workdir} with its stored config"
          + (f" and {', '.join(f'--config.{k}' for k in overrides)}" if overrides else ""), flush=True)
  return config


def adopt_init_from(config: Any, overrides: Mapping[str, Any]) -> Any:
  """With checkpoint.init_from, the model is the one it starts from: the source run's stored `model.*` (a Hugging
  Face import's: read from its config.json) replace the config's where the command line does not set them
  (RUNTIME_MODEL_KEYS and keys this family does not read excepted), and its data.vocab where that names a
  tokenizer file (hf:..., *.model), not a vocabulary trained on the corpus. Said in one line."""
  src = config.checkpoint.init_from
  if not src or not os.path.isdir(os.path.join(src, "checkpoints")):
    return config
  stored = stored_run_config(src)
  adopted = {f"model.{k}": v for k, v in stored["model"].items()
             if k in config.model and k not in RUNTIME_MODEL_KEYS and f"model.{k}" not in overrides}
  vocab = stored["data"]["vocab"]
  if (vocab.startswith("hf:") or vocab.endswith(".model")) and "data.vocab" not in overrides:
    adopted["data.vocab"] = vocab
  changed = {k: tuple(v) if isinstance(v, list) else v for k, v in adopted.items()}
  changed = {k: v for k, v in changed.items() if get(config, k) != v}
  if not changed:
    return config
  config = apply_overrides(ml_collections.ConfigDict(config.to_dict()), changed)
  config.lock()
  if jax.process_index() == 0:
    print(f"checkpoint.init_from={src}: its {', '.join(f'{k}={v!r}' for k, v in changed.items())} (set them on the "
          "command line to differ)", flush=True)
  return config
