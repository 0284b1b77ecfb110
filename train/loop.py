"""The generic training loop, and the eval and decode modes. Families plug in through models/family.py (the
interface) and the family registry installed there (models.family.family_registry: configs/families/); nothing
here names a family, a batch key or a model method.

Restore order at start-up: the workdir's latest checkpoint -> `checkpoint.init_from` (weights only) -> scratch.
"""
import dataclasses
import json
import os
import signal
import time
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from data.pipeline import PACKINGS, shard_plan, to_global
from data.sources import vocab_from_config
from data.vocab import Vocabulary
from models.family import Family, check_batch, family_registry
from models.hparams import RUNTIME_MODEL_KEYS
from train import checkpoint as ckpt_lib
from train import stored_config
from train.errors import ConfigError
from train.flops import cpu_16bit_note, total_peak_flops
from train.mesh import data_parallel_size, logical_sharding, make_mesh
from train.optim import SCHEDULES, build_optimizer
from train.profiling import StepProfiler
from train.reporting import Reporter
from train.trackers import TRACKERS
from train.state import TrainState, make_init_fn, state_shardings
from train.step import make_eval_step, make_train_step


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
                                      c.train.get("grad_accum_unroll", False)),   # absent in older runs
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
                  "train.grad_accum_steps": 1, "eval.batch_size": 1, "eval.num_batches": 1, "data.num_shards": 0,
                  "train.log_every": 0, "train.eval_every": 0, "train.checkpoint_every": 0, "train.sample_every": 0,
                  "optim.warmup_steps": 0, "checkpoint.max_to_keep": 1, "profile.start_step": 1,
                  "profile.num_steps": 0}


def check_trainer_config(config: Any) -> None:
  for key, low in TRAINER_MINIMA.items():
    section, leaf = key.split(".")
    if section not in config:   # a stored config from before the section existed (eval / decode of an old run)
      continue
    value = config[section][leaf]
    if not isinstance(value, int) or value < low:
      raise ConfigError(f"{key}={value!r} must be an integer >= {low}; set --config.{key}")
  if config.get("tracker", "tensorboard") not in TRACKERS:
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


def _imported(meta: dict) -> bool:
  return "config" not in meta and "source" in meta


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


def _meta(exp: Experiment) -> dict:
  return {"config": stored_config.to_jsonable(exp.config), **exp.family.compat, "process_count": jax.process_count(),
          "data_num_shards": exp.config.data.num_shards or jax.process_count()}


def _saved_data_shards(meta: dict) -> int | None:
  """The number of data shards a checkpoint's run read (checkpoints before `data_num_shards`: one per process)."""
  if "config" not in meta:
    return None
  return meta.get("data_num_shards") or meta["config"]["data"]["num_shards"] or meta.get("process_count")


def _keep_data_shards(config: Any, directory: str, note) -> Any:
  """`data.num_shards=0` (one shard per process) is fixed at a run's first start: resuming reads the checkpoint's
  shards, whatever the process count now, so the data stream and its position carry over (elastic restore)."""
  if config.get("data", {}).get("num_shards", 0) or ("://" not in directory and not os.path.isdir(directory)):
    return config
  saved = None
  try:
    ckpt = ckpt_lib.Checkpointer(directory, read_only=True)
    try:
      for step in reversed(ckpt.all_steps()):   # the newest step whose metadata reads (the one a restore will use)
        try:
          saved = _saved_data_shards(ckpt.meta(step))
          break
        except Exception:  # noqa: BLE001 - an unreadable step: _initial_state sets it aside and says so
          continue
    finally:
      ckpt.close()
  except Exception:  # noqa: BLE001 - no readable checkpoint directory: _initial_state says so
    return config
  if not saved:
    return config
  if saved != jax.process_count():
    note(f"data.num_shards=0: reading the checkpoint's {saved} data shard(s) on {jax.process_count()} process(es), "
         "so the data stream and its position carry over")
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.num_shards = saved
  config.lock()
  return config


class _Preemption:
  """SIGTERM sets a flag; the loop saves at the current step and exits cleanly. Processes agree on it."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def should_stop(self) -> bool:
    if jax.process_count() > 1:
      return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))
    return self.requested

  def close(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)


def evaluate(exp: Experiment, params: Any, eval_step=None) -> dict[str, float]:
  """Target-weighted averages over `eval.num_batches` fixed validation batches (fixed masking key)."""
  eval_step = eval_step or jax.jit(make_eval_step(exp.family))
  it = exp.eval_iterator()
  rng = jax.random.PRNGKey(exp.config.seed + 2)
  totals: dict[str, float] = {}
  count = 0.0
  for i in range(exp.config.eval.num_batches):
    batch = exp.to_device(next(it), "the evaluation data")
    m = jax.device_get(eval_step(params, batch, jax.random.fold_in(rng, i)))
    n = float(m["num_targets"])
    count += n
    for k, v in m.items():
      totals[k] = totals.get(k, 0.0) + (float(v) if k == "num_targets" else float(v) * n)
  return {k: (v if k == "num_targets" else v / max(count, 1.0)) for k, v in totals.items()}


def _check_resume(exp: Experiment, meta: dict, where: str, note) -> None:
  """Stops (one line) if the run's stored config differs where a resume would silently change its meaning."""
  if "config" not in meta:
    return
  stored = meta["config"]
  resolved = None
  if not stored["data"]["num_shards"]:   # 0 meant the shards that run read (_keep_data_shards)
    resolved = _saved_data_shards(meta)
    stored = {**stored, "data": {**stored["data"], "num_shards": resolved}}
  refused, noted = stored_config.resume_differences(stored, exp.config)
  refused = [f"data.num_shards: 0 (= {resolved}, one per process at the first start) -> {exp.config.data.num_shards}"
             if resolved and r.startswith("data.num_shards:") else r for r in refused]
  if refused:
    raise ConfigError(f"{where} was trained with a different config: {'; '.join(refused)}. Resume with the stored "
                      f"values (leave out --config: the workdir's stored config is used) or use a fresh --workdir")
  for change in noted:   # train.num_steps: the schedule is derived from it
    old = ml_collections.ConfigDict(meta["config"])
    step = int(where.rsplit("/", 1)[-1])
    _, old_schedule = build_optimizer(old.optim, old.train.num_steps)
    note(f"{change}: the learning-rate schedule is re-derived for train.num_steps={exp.config.train.num_steps} "
         f"(at step {step} the learning rate goes from {float(old_schedule(step)):.3g} to "
         f"{float(exp.schedule(step)):.3g})")


def _restore_step(exp: Experiment, ckpt: ckpt_lib.Checkpointer, step: int, data_iter, reporter_note):
  meta = ckpt.meta(step)
  if _imported(meta):
    raise ConfigError(f"{ckpt.directory}/{step} is a Hugging Face import (weights only), not a training run; train "
                      f"in a fresh --workdir with --config.checkpoint.init_from={os.path.dirname(ckpt.directory)}")
  ckpt_lib.check_compatible(meta, exp.family.compat, f"{ckpt.directory}/{step}")
  _check_resume(exp, meta, f"{ckpt.directory}/{step}", reporter_note)
  state, data_iter = ckpt.restore(step, exp.abstract_state, data_iter)
  _check_restored(state, exp.abstract_state)
  reporter_note(f"resuming from {ckpt.directory} step {step}")
  return state, data_iter


def _check_restored(state: TrainState, abstract: TrainState) -> None:
  """Never resume from garbage: every restored array has its stored shape and dtype, and every float is finite
  (a damaged file that still decodes would otherwise be trained on); a ValueError makes the caller fall back."""
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(abstract)):
    if got.shape != want.shape or got.dtype != want.dtype:
      raise ValueError(f"{jax.tree_util.keystr(path)} restored as {got.dtype}{list(got.shape)}, stored as "
                       f"{want.dtype}{list(want.shape)}")
  floats = [x for x in jax.tree.leaves(state) if jax.numpy.issubdtype(x.dtype, jax.numpy.floating)]
  finite = jax.jit(lambda xs: jax.numpy.stack([jax.numpy.isfinite(x).all() for x in xs]).all())(floats)
  if not bool(finite):
    raise ValueError("restored values are not finite")


PARTIAL_LOAD_LIMIT = 0.1   # a fine-tune's new head is a few percent of the model; more is usually a wrong shape


def _check_partial(report: dict, checkpoint_cfg: Any, frozen=None) -> None:
  """One line when checkpoint.init_from would leave more than PARTIAL_LOAD_LIMIT of the weights fresh (a model
  shape that differs from the checkpoint's), unless checkpoint.allow_partial. A family that freezes what it loads
  (Family.frozen, e.g. a base under a new block) trains its unfrozen weights fresh by design: then every frozen
  weight must load, whatever the share."""
  if checkpoint_cfg.get("allow_partial", False):
    return
  if frozen is not None:
    missing = [p for p in report["fresh"] if frozen(tuple(p.split("/")))]
    if missing:
      raise ConfigError(f"checkpoint.init_from={checkpoint_cfg.init_from!r} lacks {len(missing)} of the weights this "
                        f"family freezes ({'; '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): they would "
                        "stay at their random initialisation; match its model.* keys (leave them unset)")
    return
  if report["fresh_fraction"] <= PARTIAL_LOAD_LIMIT:
    return
  shown = report["mismatched"][:3] or report["fresh"][:3]
  raise ConfigError(f"checkpoint.init_from={checkpoint_cfg.init_from!r} would leave {report['fresh_fraction']:.0%} of "
                    f"the weights fresh ({len(report['fresh'])} of {len(report['fresh']) + len(report['loaded'])}: "
                    f"{'; '.join(shown)}{', ...' if len(report['fresh']) > len(shown) else ''}); match its model.* "
                    "keys (leave them unset: they are read from its stored config), or pass "
                    "--config.checkpoint.allow_partial=True to train the rest from scratch")


def _initial_state(exp: Experiment, ckpt: ckpt_lib.Checkpointer, data_iter, reporter_note) -> tuple[TrainState, Any]:
  """The latest readable checkpoint (an unreadable one, e.g. truncated or corrupted on disk, is set aside with a
  one-line warning and the previous committed step is used; none readable left: one-line error), else
  `checkpoint.init_from`'s weights, else a fresh state."""
  steps = ckpt.all_steps()
  for i, step in enumerate(reversed(steps)):
    try:
      return _restore_step(exp, ckpt, step, data_iter if i == 0 else exp.train_iterator(), reporter_note)
    except ConfigError:
      raise
    except Exception as e:  # noqa: BLE001 - orbax / tensorstore / JSON errors of a damaged step directory
      why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
      if i == len(steps) - 1:
        raise ConfigError(f"no readable checkpoint in {ckpt.directory}: step {step} is unreadable ({why}); move "
                          "the directory away to start fresh, or restore it from a copy") from None
      moved = ckpt.set_aside(step)
      print(f"warning: checkpoint step {step} in {ckpt.directory} is unreadable ({why}); set aside as {moved}, "
            f"falling back to step {steps[-2 - i]}", flush=True)
  state = exp.init_state()
  if exp.config.checkpoint.init_from:
    src = ckpt_lib.Checkpointer(os.path.join(exp.config.checkpoint.init_from, "checkpoints"), read_only=True)
    src_step = src.latest_step()
    if src_step is None:
      raise ConfigError(f"checkpoint.init_from={exp.config.checkpoint.init_from!r} holds no checkpoint")
    ckpt_lib.check_compatible(src.meta(src_step), exp.family.compat, f"{src.directory}/{src_step}")
    try:
      params, report = src.restore_matching_params(src_step, exp.abstract_state.params, state.params)
    finally:
      src.close()
    _check_partial(report, exp.config.checkpoint, exp.family.frozen)
    state = state.replace(params=params)
    reporter_note(f"initialised {len(report['loaded'])} of {len(report['loaded']) + len(report['fresh'])} weights "
                  f"from {src.directory} step {src_step}"
                  + (f"; fresh ({report['fresh_fraction']:.1%} of the parameters): {', '.join(report['fresh'][:6])}"
                     + (f" and {len(report['fresh']) - 6} more" if len(report["fresh"]) > 6 else "")
                     if report["fresh"] else ""))
  return state, data_iter


def train(config: Any, workdir: str, *, stop_at_step: int | None = None) -> dict[str, float]:
  """Trains to `train.num_steps` (resuming if the workdir has a checkpoint). Returns the final eval metrics.

  `stop_at_step` ends the run early without a final save, as a crash would (for resume tests).
  """
  check_workdir(workdir)
  notes: list[str] = []
  config = _keep_data_shards(config, os.path.join(workdir, "checkpoints"), notes.append)
  exp = build_experiment(config)
  c = config
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=c.checkpoint.max_to_keep,
                               async_save=c.checkpoint.async_save)
  if jax.process_index() == 0:
    stored_config.write_if_fresh(config, workdir, ckpt.latest_step() is not None)
  dtype = getattr(exp.family.hparams, "dtype", "float32")   # the family's compute dtype, not a config key
  peak_flops = total_peak_flops(tuple(jax.devices()), c.train.peak_flops_per_device, dtype)   # outside the mesh
  slow_16bit = cpu_16bit_note(jax.devices(), dtype)
  if slow_16bit:
    notes.append(slow_16bit)
  fam = exp.family
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    data_iter = exp.train_iterator()
    try:
      state, data_iter = _initial_state(exp, ckpt, data_iter, notes.append)
    except BaseException:
      ckpt.close()
      raise
    start = int(jax.device_get(state.step))
    tokens_per_step = c.train.batch_size * fam.tokens_per_example
    reporter = Reporter(workdir, total_steps=c.train.num_steps, start_step=start, tokens_per_step=tokens_per_step,
                        flops_per_step=fam.flops_per_token(fam.tokens_per_example) * tokens_per_step,
                        peak_flops=peak_flops,
                        log_every=c.train.log_every, tracker=c.get("tracker", "tensorboard"),
                        config=stored_config.to_jsonable(c),
                        baseline=fam.baseline() if fam.baseline and jax.process_index() == 0 else None)
    for n in [param_overview(exp)] + notes:
      reporter.note(n)
    profiler = StepProfiler(workdir, c.profile.start_step, c.profile.num_steps)
    t = time.time()
    step_fn = exp.compiled_train_step()
    reporter.note(f"compiled the train step in {time.time() - t:.1f}s")
    eval_step = jax.jit(make_eval_step(fam))
    preemption = _Preemption()
    final_eval: dict[str, float] = {}
    pending = None  # (step, metrics) of the step dispatched last, fetched after the next dispatch
    reporter.start_timer(start)
    try:
      for step in range(start, c.train.num_steps):
        with profiler.step(step + 1):
          batch = exp.to_device(next(data_iter))
          state, metrics = step_fn(state, batch)
        if (note := profiler.after(step + 1, metrics)) is not None:
          reporter.note(note)
        if pending is not None:
          reporter.train(*pending)
        pending = (step + 1, metrics)
        done = step + 1
        stop = preemption.should_stop()
        last = done == c.train.num_steps
        if stop or last or (c.train.checkpoint_every and done % c.train.checkpoint_every == 0):
          reporter.train(*pending)  # a checkpoint never holds a state whose loss was not checked
          pending = None
          ckpt.save(done, state, data_iter, _meta(exp))
        if stop:
          reporter.note(f"SIGTERM: saved a checkpoint at step {done}; exiting")
          break
        if last or (c.train.eval_every and done % c.train.eval_every == 0):
          final_eval = evaluate(exp, state.params, eval_step)
          reporter.eval(done, final_eval)
        if fam.decode and fam.prompts and (last or (c.train.sample_every and done % c.train.sample_every == 0)):
          reporter.text(done, "samples", "\n---\n".join(fam.decode(state.params, list(fam.prompts), exp.mesh)))
        if stop_at_step is not None and done >= stop_at_step:
          break
      if pending is not None:
        reporter.train(*pending)
    finally:
      profiler.close()
      preemption.close()
      ckpt.close()
      reporter.close()
  return final_eval


def _restore_latest(exp: Experiment, workdir: str) -> tuple[int, Any]:
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  if step is None:
    raise ConfigError(f"--workdir={workdir} holds no checkpoint; train first (--mode=train)")
  ckpt_lib.check_compatible(ckpt.meta(step), exp.family.compat, f"{ckpt.directory}/{step}")
  params = ckpt.restore_params(step, exp.abstract_state.params)
  ckpt.close()
  return step, params


def stored_run_config(workdir: str) -> dict:
  """The config a workdir's latest checkpoint was trained with (config.json for checkpoints without one)."""
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  meta = ckpt.meta(step) if step is not None else {}
  ckpt.close()
  if step is None:
    raise ConfigError(f"--workdir={workdir} holds no checkpoint; train first (--mode=train)")
  if "config" in meta:
    return meta["config"]
  if _imported(meta):
    raise ConfigError(f"--workdir={workdir} is a Hugging Face import (weights only, no training config); use it as "
                      f"--config.checkpoint.init_from={workdir} of a training run")
  if not os.path.exists(stored_config.config_path(workdir)):
    raise ConfigError(f"--workdir={workdir} has a checkpoint but no stored config (config.json); it was not "
                      "written by launch.py --mode=train")
  with open(stored_config.config_path(workdir)) as f:
    return json.load(f)


def load_trained(config: Any, workdir: str) -> tuple[Experiment, int, Any]:
  """(experiment, step, params) of a training workdir's latest checkpoint, for benchmarks and notebooks.
  The params are replicated on this process's mesh; call under `jax.set_mesh(exp.mesh)` if you shard further."""
  exp = build_experiment(config)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    step, params = _restore_latest(exp, workdir)
  return exp, step, params


def import_hf(config: Any, hf_dirs: list[str], workdir: str) -> str:
  """Hugging Face directories -> WORKDIR/checkpoints/0 and WORKDIR/config.json: the weights, and the command
  line's config with the family's `model.*` read from the checkpoint's config.json (every field of its
  hyperparameters, vocab_size included, except RUNTIME_MODEL_KEYS: dtype, attention kernel, remat, dropout) and,
  where the directory has a tokenizer.json, data.vocab=hf:<dir>. The workdir then serves --mode=decode / eval /
  export_hf and --config.checkpoint.init_from as a trained run's does (it cannot be trained on in place). The family is `config.model.name`'s; its registered HfInterop converts."""
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
  changed = [f"{k}={v!r}" for k, v in derived.items() if _get(config, k) != v]
  return (f"imported {', '.join(hf_dirs)} into {workdir} ({'; '.join(changed) or 'the config matched'}); use "
          f"--workdir={workdir} with --mode=decode|eval|export_hf, or --config.checkpoint.init_from={workdir}")


def _get(config: Any, key: str) -> Any:
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def export_hf(workdir: str, hf_dir: str, config: Any = None) -> str:
  """A workdir's latest checkpoint -> a directory `transformers` loads, with the run's tokenizer beside the weights
  (data/hf_tokenizer.py export_tokenizer), through the family of the run's stored config. A Hugging Face import
  (weights only) has no stored config: it exports with `config` (launch.py's --config), whose model section must
  describe the imported weights."""
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  if step is None:
    ckpt.close()
    raise ConfigError(f"--workdir={workdir} holds no checkpoint; train or import first")
  meta = ckpt.meta(step)
  if "config" not in meta and _imported(meta):   # an import written before imports stored their config
    if config is None:
      ckpt.close()
      raise ConfigError(f"--workdir={workdir} is a Hugging Face import: pass the --config that describes it")
    config = ml_collections.ConfigDict(config.to_dict() if hasattr(config, "to_dict") else config)
  else:
    config = ml_collections.ConfigDict(stored_run_config(workdir))
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
  from data.hf_tokenizer import export_tokenizer
  note = export_tokenizer(vocab_from_config(config.data), config.data.vocab, model_dirs,
                          model_max_length=config.data.seq_len, framing=reg.hf.framing)
  return f"exported {workdir} step {step} to {hf_dir}; {note}"


def _resume_stored(workdir: str, overrides: dict[str, Any]) -> Any:
  """The config to resume `workdir` with when the command line names none: the latest checkpoint's (config.json
  before the first checkpoint), with the changeable `overrides` applied; None for a fresh workdir."""
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  has_step = ckpt.latest_step() is not None
  ckpt.close()
  if not has_step and not os.path.exists(stored_config.config_path(workdir)):
    return None
  if has_step:
    stored = stored_run_config(workdir)
  else:
    with open(stored_config.config_path(workdir)) as f:
      stored = json.load(f)
  config = stored_config.resume_config(stored, overrides)
  if jax.process_index() == 0:
    print(f"resuming {workdir} with its stored config"
          + (f" and {', '.join(f'--config.{k}' for k in overrides)}" if overrides else ""), flush=True)
  return config


def _adopt_init_from(config: Any, overrides: dict[str, Any]) -> Any:
  """With checkpoint.init_from, the model is the one it starts from: the source run's stored `model.*` (a Hugging
  Face import's: read from its config.json) replace the config's where the command line does not set them
  (RUNTIME_MODEL_KEYS and keys this family does not read excepted), and its data.vocab where that names a
  tokenizer file (hf:..., *.model), not a vocabulary trained on the corpus. Said in one line."""
  src = config.checkpoint.init_from
  if not src or not os.path.isdir(os.path.join(src, "checkpoints")):
    return config
  try:
    stored = stored_run_config(src)
  except ConfigError:   # an import written before imports stored their config
    return config
  adopted = {f"model.{k}": v for k, v in stored.get("model", {}).items()
             if k in config.model and k not in RUNTIME_MODEL_KEYS and f"model.{k}" not in overrides}
  vocab = stored.get("data", {}).get("vocab", "")
  if (vocab.startswith("hf:") or vocab.endswith(".model")) and "data.vocab" not in overrides:
    adopted["data.vocab"] = vocab
  changed = {k: v for k, v in adopted.items()
             if _get(config, k) != (tuple(v) if isinstance(v, list) else v)}
  if not changed:
    return config
  config = stored_config.apply_overrides(ml_collections.ConfigDict(config.to_dict()),
                                         {k: tuple(v) if isinstance(v, list) else v for k, v in changed.items()})
  config.lock()
  if jax.process_index() == 0:
    print(f"checkpoint.init_from={src}: its {', '.join(f'{k}={v!r}' for k, v in changed.items())} (set them on the "
          "command line to differ)", flush=True)
  return config


def run(config: Any, workdir: str, mode: str = "train", text: str = "",
        overrides: dict[str, Any] | None = None, config_given: bool = True) -> Any:
  """Entry point used by launch.py. `train` uses `config` (and writes it to a fresh workdir), or, when the command
  line named no --config (`config_given=False`) and the workdir holds a run, that run's stored config with the
  changeable `overrides` applied; `eval` and `decode` use the workdir's stored config with `overrides` (the command
  line's --config.* values) applied on top."""
  if mode == "train":
    if not config_given and (os.path.isdir(workdir) or "://" in workdir):
      config = _resume_stored(workdir, overrides or {}) or config
    return train(_adopt_init_from(config, overrides or {}), workdir)
  if mode not in ("eval", "decode"):
    raise ConfigError(f"--mode={mode!r}: use train, eval or decode")
  config = stored_config.eval_config(stored_run_config(workdir), overrides or {}, mode)
  exp = build_experiment(config)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    step, params = _restore_latest(exp, workdir)
    if mode == "eval":
      metrics = evaluate(exp, params)
      print(json.dumps({"step": step, **metrics}), flush=True)
      if jax.process_index() == 0:
        with open(os.path.join(workdir, "eval_results.jsonl"), "a") as f:
          f.write(json.dumps({"step": step, **metrics}) + "\n")
      if exp.family.analyses is not None:   # the family's own evaluations (eval.analyses)
        results = {"step": step, **exp.family.analyses(params)}
        print(json.dumps(results), flush=True)
        if jax.process_index() == 0:
          with open(os.path.join(workdir, "analysis.jsonl"), "a") as f:
            f.write(json.dumps(results) + "\n")
        return {**metrics, "analyses": results}
      return metrics
    if exp.family.decode is None:
      raise ConfigError(f"model.name={exp.family.name!r} has no decode mode")
    prompts = [text] if text else list(exp.family.prompts)
    if not prompts:
      raise ConfigError(f"model.name={exp.family.name!r}: the run's config has no decode.prompts; give the text to "
                        "decode with --text=...")
    try:
      outputs = exp.family.decode(params, prompts, exp.mesh)
    except ValueError as e:   # decode hooks refuse bad prompts (too long, ...) with ValueError
      raise ConfigError(str(e)) from None
    for p, o in zip(prompts, outputs):
      print(f"--- input:\n{p}\n--- output:\n{o}", flush=True)
    for note in outputs[len(prompts):]:   # a hook may report side products (files written) after the outputs
      print(note, flush=True)
    return outputs
