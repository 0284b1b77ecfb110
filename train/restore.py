"""Restoring a run, in order: the workdir's latest readable checkpoint (a damaged step is set aside and the previous
one used) -> `checkpoint.init_from`'s weights (the partial-load rule) -> a fresh state. A resume refuses a config
that would change what the run trains (train/stored_config.py), and keeps the data shards of the run's first start
whatever the process count now (elastic restore)."""
import os
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from train import checkpoint as ckpt_lib
from train import stored_config
from train.errors import ConfigError
from train.experiment import Experiment, build_experiment
from train.optim import build_optimizer
from train.state import TrainState


def _saved_data_shards(meta: dict) -> int | None:
  """The number of data shards a checkpoint's run read (None for a Hugging Face import: it read no data)."""
  return meta.get("data_num_shards")


def keep_data_shards(config: Any, directory: str, note) -> Any:
  """`data.num_shards=0` (one shard per process) is fixed at a run's first start: resuming reads the checkpoint's
  shards, whatever the process count now, so the data stream and its position carry over (elastic restore)."""
  if config.data.num_shards or ("://" not in directory and not os.path.isdir(directory)):
    return config
  saved = None
  try:
    ckpt = ckpt_lib.Checkpointer(directory, read_only=True)
    try:
      for step in reversed(ckpt.all_steps()):   # the newest step whose metadata reads (the one a restore will use)
        try:
          saved = _saved_data_shards(ckpt.meta(step))
          break
        except Exception:  # noqa: BLE001 - an unreadable step: initial_state sets it aside and says so
          continue
    finally:
      ckpt.close()
  except Exception:  # noqa: BLE001 - no readable checkpoint directory: initial_state says so
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


def _check_resume(exp: Experiment, meta: dict, where: str, note) -> None:
  """Stops (one line) if the run's stored config differs where a resume would silently change its meaning."""
  stored = meta["config"]
  resolved = None
  if not stored["data"]["num_shards"]:   # 0 meant the shards that run read (keep_data_shards)
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
  if ckpt_lib.is_import(meta):
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


def check_partial(report: dict, checkpoint_cfg: Any, frozen=None) -> None:
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


def initial_state(exp: Experiment, ckpt: ckpt_lib.Checkpointer, data_iter, reporter_note) -> tuple[TrainState, Any]:
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
    check_partial(report, exp.config.checkpoint, exp.family.frozen)
    state = state.replace(params=params)
    reporter_note(f"initialised {len(report['loaded'])} of {len(report['loaded']) + len(report['fresh'])} weights "
                  f"from {src.directory} step {src_step}"
                  + (f"; fresh ({report['fresh_fraction']:.1%} of the parameters): {', '.join(report['fresh'][:6])}"
                     + (f" and {len(report['fresh']) - 6} more" if len(report["fresh"]) > 6 else "")
                     if report["fresh"] else ""))
  return state, data_iter


def restore_latest(exp: Experiment, workdir: str) -> tuple[int, Any]:
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  if step is None:
    raise ConfigError(f"--workdir={workdir} holds no checkpoint; train first (--mode=train)")
  ckpt_lib.check_compatible(ckpt.meta(step), exp.family.compat, f"{ckpt.directory}/{step}")
  params = ckpt.restore_params(step, exp.abstract_state.params)
  ckpt.close()
  return step, params



def load_trained(config: Any, workdir: str) -> tuple[Experiment, int, Any]:
  """(experiment, step, params) of a training workdir's latest checkpoint, for benchmarks and notebooks.
  The params are replicated on this process's mesh; call under `jax.set_mesh(exp.mesh)` if you shard further."""
  exp = build_experiment(config)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    step, params = restore_latest(exp, workdir)
  return exp, step, params

