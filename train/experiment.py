"""Experiment assembly: a config -> a validated `Experiment` (mesh, vocabulary, family, optimiser, abstract state,
shardings), built before anything is compiled or read. Families plug in through models/family.py and the registry
installed by the composition root (launch.py); nothing here names a family, a batch key or a model method."""
import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh

from data.pipeline import PACKINGS, shard_plan, to_global
from data.sources import vocab_from_config
from data.vocab import Vocabulary
from models.family import Family, check_batch, family_registry
from train.errors import ConfigError
from train.mesh import data_parallel_size, logical_sharding, make_mesh
from train.optim import SCHEDULES, build_optimizer
from train.state import TrainState, make_init_fn, state_shardings
from train.step import make_train_step
from train.trackers import TRACKERS

@dataclasses.dataclass
class Experiment:
  """Everything a run needs, built and validated before any compilation."""
  config: Any
  mesh: Mesh
  rules: tuple
  vocab: Vocabulary
  family: Family
  tx: Any
  schedule: Any
  abstract_state: TrainState
  state_sharding: TrainState
  batch_shardings: dict[str, jax.sharding.NamedSharding]   # per batch key, from the family's logical axes

  def train_iterator(self):
    try:
      return self.family.data.train_iterator(global_batch=self.config.train.batch_size, seed=self.config.seed)
    except (ValueError, FileNotFoundError) as e:   # a data file the source opens lazily: one line
      raise ConfigError(str(e)) from None

  def eval_iterator(self):
    """The same first `eval.num_batches` validation batches at every evaluation."""
    return self.family.data.eval_iterator(global_batch=self.config.eval.batch_size, seed=self.config.seed + 1)

  def to_device(self, batch: dict[str, np.ndarray], source: str = "the data source") -> dict[str, jax.Array]:
    """This process's rows -> global arrays, after checking them against the family's batch_spec."""
    try:
      check_batch(self.family.batch_spec, batch, f"model.name={self.family.name!r}: {source}")
    except ValueError as e:
      raise ConfigError(str(e)) from None
    return to_global(batch, self.batch_shardings)

  def init_state(self, seed: int | None = None) -> TrainState:
    """A fresh, sharded TrainState (call under `jax.set_mesh(self.mesh)`)."""
    init = jax.jit(make_init_fn(self.family, self.tx), out_shardings=self.state_sharding)
    return init(jax.random.PRNGKey(self.config.seed if seed is None else seed))

  def abstract_batch(self, global_batch: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((global_batch, *f.shape), f.dtype, sharding=self.batch_shardings[k])
            for k, f in self.family.batch_spec.items()}

  def compiled_train_step(self):
    """The jitted, ahead-of-time compiled train step with state and batch shardings from the logical rules."""
    c = self.config
    batch = self.abstract_batch(c.train.batch_size)
    step_fn = jax.jit(make_train_step(self.family, self.tx, self.schedule, c.train.grad_accum_steps,
                                      c.train.grad_accum_unroll),
                      in_shardings=(self.state_sharding, self.batch_shardings),
                      out_shardings=(self.state_sharding, None), donate_argnums=0)
    return step_fn.lower(self.abstract_state, batch).compile()


def _check_batch(name: str, batch: int, mesh: Mesh, accum: int = 1) -> None:
  dp = data_parallel_size(mesh)
  if batch % accum or (batch // accum) % dp:
    raise ConfigError(f"{name}={batch} (with train.grad_accum_steps={accum}) is not divisible into micro-batches "
                      f"that split over the data-parallel size mesh.data*mesh.fsdp={dp}; set --config.{name} to "
                      f"a multiple of {dp * accum}")


# Enumerated trainer keys (the family's own are checked by the registry's check_config).
TRAINER_CHOICES = {"optim.schedule": SCHEDULES, "data.packing": PACKINGS}   # and `tracker` (check_trainer_config)


# Trainer keys that must be at least this large.
TRAINER_MINIMA = {"data.seq_len": 1, "data.max_doc_chars": 1, "train.batch_size": 1, "train.num_steps": 1,
                  "train.stop_after_steps": 0,
                  "train.grad_accum_steps": 1, "eval.batch_size": 1, "eval.num_batches": 1, "data.num_shards": 0,
                  "train.log_every": 0, "train.eval_every": 0, "train.checkpoint_every": 0, "train.sample_every": 0,
                  "optim.warmup_steps": 0, "checkpoint.max_to_keep": 1, "profile.start_step": 1,
                  "profile.num_steps": 0}


def check_trainer_config(config: Any) -> None:
  for key, low in TRAINER_MINIMA.items():
    section, leaf = key.split(".")
    value = config[section][leaf]
    if not isinstance(value, int) or value < low:
      raise ConfigError(f"{key}={value!r} must be an integer >= {low}; set --config.{key}")
  if config.tracker not in TRACKERS:
    raise ConfigError(f"tracker={config.tracker!r} is not one of {list(TRACKERS)}; set --config.tracker to one of them")
  for key, choices in TRAINER_CHOICES.items():
    section, leaf = key.split(".")
    value = config[section][leaf]
    if value not in choices:
      raise ConfigError(f"{key}={value!r} is not one of {list(choices)}; set --config.{key} to one of them")


def check_workdir(workdir: str) -> None:
  """A local --workdir must be creatable and writable (checked before anything is built)."""
  if "://" in workdir:
    return
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir} cannot be created ({e.strerror}); choose a writable directory") from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise ConfigError(f"--workdir={workdir} is not writable; choose a writable directory")


def build_experiment(config: Any, devices=None, vocab: Vocabulary | None = None) -> Experiment:
  """Validates the config and builds mesh, vocabulary (unless given), family and shardings. Compiles nothing, reads
  no data. `devices`: this process's by default, or e.g. a TPU topology's compile-only devices (train/aot.py)."""
  check_trainer_config(config)
  init_from = config.checkpoint.init_from
  if init_from and "://" not in init_from and not os.path.isdir(os.path.join(init_from, "checkpoints")):
    raise ConfigError(f"checkpoint.init_from={init_from!r} holds no checkpoints/ directory; give a training "
                      "workdir or a launch.py --mode=import_hf workdir")
  try:
    family_registry().check_config(config)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  mesh = make_mesh(config.mesh, devices)
  _check_batch("train.batch_size", config.train.batch_size, mesh, config.train.grad_accum_steps)
  _check_batch("eval.batch_size", config.eval.batch_size, mesh)
  for name, batch in (("train.batch_size", config.train.batch_size), ("eval.batch_size", config.eval.batch_size)):
    try:
      shard_plan(batch, config.data.num_shards, jax.process_index(), jax.process_count())
    except ValueError as e:
      raise ConfigError(f"{name}: {e}") from None
  try:
    vocab = vocab if vocab is not None else vocab_from_config(config.data)
    family = family_registry().build(config, vocab)
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(str(e)) from None
  if family.base and not config.checkpoint.init_from:
    raise ConfigError(f"model.name={family.name!r} trains on {family.base}: set --config.checkpoint.init_from=<it>")
  rules = tuple(tuple(r) for r in config.logical_axis_rules)
  tx, schedule = build_optimizer(config.optim, config.train.num_steps, family.frozen)
  with nn.logical_axis_rules(rules):   # outside the mesh: optax builds placeholder states eagerly (no TPU here)
    try:
      abstract, shardings = state_shardings(family, tx, mesh, rules)
    except ValueError as e:   # a layer that refuses its settings when traced (e.g. splash at a length it cannot tile)
      raise ConfigError(str(e)) from None
    batch_shardings = {k: logical_sharding(mesh, rules, "batch", *f.axes) for k, f in family.batch_spec.items()}
  return Experiment(config, mesh, rules, vocab, family, tx, schedule, abstract, shardings, batch_shardings)


def param_overview(exp: Experiment) -> str:
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(exp.abstract_state.params))
  compat = "".join(f" | {k} {v}" for k, v in exp.family.compat.items())
  return f"model {exp.family.name}: {n:,} parameters | vocab {exp.vocab.size}{compat} | mesh {dict(exp.mesh.shape)}"

