"""Hugging Face both ways, workdir to workdir: `import_hf` writes a checkpoint (and the config it implies) from
Hugging Face directories; `export_hf` writes a workdir's latest checkpoint as a directory `transformers` loads, with
the tokenizer. The family's registered `HfInterop` converts the weights."""
import dataclasses
import os
from typing import Any

import jax
import ml_collections

from data.hf_tokenizer import export_tokenizer
from data.sources import vocab_from_config
from models.family import family_registry
from models.hparams import RUNTIME_MODEL_KEYS
from train import checkpoint as ckpt_lib
from train import stored_config
from train.errors import ConfigError


def import_hf(config: Any, hf_dirs: list[str], workdir: str) -> str:
  """Hugging Face directories -> WORKDIR/checkpoints/0 and WORKDIR/config.json: the weights, and the command
  line's config with the family's `model.*` read from the checkpoint's config.json (every field of its
  hyperparameters, vocab_size included, except RUNTIME_MODEL_KEYS: dtype, attention kernel, remat, dropout) and,
  where the directory has a tokenizer.json, data.vocab=hf:<dir>. The workdir then serves --mode=decode / eval /
  export_hf and --config.checkpoint.init_from as a trained run's does (it cannot be trained on in place). The
  family is `config.model.name`'s; its registered HfInterop converts."""
  reg = family_registry().registration(config.model.name)
  if reg.hf is None or reg.hf.load is None:
    raise ConfigError(f"model.name={reg.name!r} has no Hugging Face import")
  params, compat, hp = reg.hf.load(hf_dirs)
  derived = {f"model.{f.name}": getattr(hp, f.name) for f in dataclasses.fields(hp)
             if f.name in config.model and f.name not in RUNTIME_MODEL_KEYS}
  tokenizer = os.path.join(hf_dirs[0], "tokenizer.json")
  if os.path.isfile(tokenizer):
    derived["data.vocab"] = f"hf:{os.path.abspath(hf_dirs[0])}"
  stored = stored_config.apply_overrides(ml_collections.ConfigDict(config.to_dict()), derived)
  try:
    family_registry().check_config(stored)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  ckpt.save(0, {"params": params}, None, {**compat, "source": [os.path.abspath(d) for d in hf_dirs],
                                          "family": reg.name, "config": stored_config.to_jsonable(stored)})
  ckpt.close()
  stored_config.write_if_fresh(stored, workdir, has_checkpoint=False)
  changed = [f"{k}={v!r}" for k, v in derived.items() if stored_config.get(config, k) != v]
  return (f"imported {', '.join(hf_dirs)} into {workdir} ({'; '.join(changed) or 'the config matched'}); use "
          f"--workdir={workdir} with --mode=decode|eval|export_hf, or --config.checkpoint.init_from={workdir}")



def export_hf(workdir: str, hf_dir: str) -> str:
  """A workdir's latest checkpoint (a training run's or an import's) -> a directory `transformers` loads, with the
  run's tokenizer beside the weights (data/hf_tokenizer.py export_tokenizer), through the family of its stored
  config."""
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  if step is None:
    ckpt.close()
    raise ConfigError(f"--workdir={workdir} holds no checkpoint; train or import first")
  meta = ckpt.meta(step)
  if "config" not in meta:
    ckpt.close()
    raise ConfigError(f"--workdir={workdir} has a checkpoint without a stored config; it was not written by "
                      "launch.py (--mode=train or --mode=import_hf)")
  config = ml_collections.ConfigDict(meta["config"])
  reg = family_registry().registration(config.model.name)
  if reg.hf is None or reg.hf.save is None:
    ckpt.close()
    raise ConfigError(f"model.name={reg.name!r} has no Hugging Face export")
  params = jax.device_get(ckpt.restore_params(step, ckpt.saved_params_abstract(step)))
  ckpt.close()
  compat = {k: v for k, v in meta.items() if k not in ("config", "process_count", "source", "family")}
  reg.hf.save(config, compat, params, hf_dir)
  model_dirs = [d for d in [hf_dir] + sorted(os.path.join(hf_dir, n) for n in os.listdir(hf_dir))
                if os.path.isfile(os.path.join(d, "config.json"))]   # a family may write several model directories
  note = export_tokenizer(vocab_from_config(config.data), config.data.vocab, model_dirs,
                          model_max_length=config.data.seq_len, framing=reg.hf.framing)
  return f"exported {workdir} step {step} to {hf_dir}; {note}"

