"""Orbax checkpoints: train state, data position and config in one atomic, asynchronous step directory.

Orbax writes each step to a temporary directory and renames it on commit, so a crash (even SIGKILL during an
async save) leaves the previous committed step as the latest; leftover temporary directories are cleaned up.
All processes must call save and restore (orbax coordinates them).

The data position (item `data_iter`) is stored by DataPositionHandler as one JSON record per data shard, whatever
the process count, so a checkpoint restores on any number of processes (train/README.md, "Elastic restore").
"""
import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
from typing import Any

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp

from train.errors import ConfigError, StorageError


# Replica-parallel saving splits each replicated array among its replicas, which costs one small compiled slice per
# distinct shape in every process (9 s for a 2-layer test model's 202 arrays on 8 CPU devices, more than its 30
# steps); an array with less than 1 MiB per replica is written whole by one replica instead. Large ones still split.
MIN_REPLICA_SLICE_BYTES = 1 << 20


@functools.cache
def _install_array_handler() -> None:
  """The one place this module reaches into orbax's private modules (orbax 0.12.8), run once when the first
  Checkpointer opens, not at import: jax.Array's handler with MIN_REPLICA_SLICE_BYTES. orbax's public
  `register_type_handler` does the same but logs a warning on every override, and the default handler's metadata
  store (kept here, so checkpoints read as before) has no public constructor. Restores also swap orbax's event-loop
  runner while they run (_draining_restores)."""
  from orbax.checkpoint._src.metadata import array_metadata_store
  from orbax.checkpoint._src.serialization import type_handler_registry
  type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(
      jax.Array, ocp.type_handlers.ArrayHandler(array_metadata_store=array_metadata_store.Store(),
                                                min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES),
      override=True, ignore_warnings=True)


def _run_sync_draining(coro):
  """orbax's `_run_sync_via_new_loop`, except that when the coroutine fails its sibling tasks are awaited before the
  loop closes. A restore that fails on one damaged file otherwise closes the loop while tensorstore's other reads
  are in flight; their completion callbacks then print "RuntimeError: Event loop is closed" tracebacks to stderr
  (a one-line fallback must not print tracebacks)."""
  loop = asyncio.new_event_loop()
  try:
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(coro)
  finally:
    pending = asyncio.all_tasks(loop)
    if pending:
      loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    asyncio.set_event_loop(None)
    loop.close()


@contextlib.contextmanager
def _draining_restores():
  from orbax.checkpoint._src import asyncio_utils   # private (orbax 0.12.8): the runner restores go through
  original = asyncio_utils._run_sync_via_new_loop
  asyncio_utils._run_sync_via_new_loop = _run_sync_draining
  try:
    yield
  finally:
    asyncio_utils._run_sync_via_new_loop = original


class DataPositionHandler:
  """Orbax handler of a data iterator's position. Iterators with `portable_state()` (data/pipeline.py) write one
  `<key>.json` per record, each record by one process; on restore, `set_portable_state(read)` reads the records
  it needs, whoever wrote them. Other iterators (grain's protocol only) use one file per process, restorable on
  the same process count. Records of checkpoints written before portable states (`process_<i>-of-<n>.json`) are
  read on the process count that wrote them."""

  def save(self, directory, args=None, item=None):
    it = item if item is not None else args.item
    if hasattr(it, "portable_state"):
      for key, record in it.portable_state().items():
        (directory / f"{key}.json").write_text(json.dumps(record))
    else:
      state = it.get_state()
      (directory / _process_file()).write_text(state.decode() if isinstance(state, bytes) else json.dumps(state))

  def restore(self, directory, args=None, item=None):
    it = item if item is not None else args.item
    per_process = sorted(p.name for p in directory.iterdir() if p.name.startswith("process_"))
    if hasattr(it, "portable_state") and not per_process:
      def read(key: str) -> Any:
        path = directory / f"{key}.json"
        if not path.exists():
          held = sorted(p.name[:-5] for p in directory.iterdir() if p.name.endswith(".json"))
          family = key.rsplit("-of-", 1)[-1] if "-of-" in key else None
          if not held or (family and any(h.endswith(f"-of-{family}") for h in held)):   # its siblings are there
            raise ValueError(f"the checkpoint's data position ({directory}) lacks its record {key}: the step "
                             "is damaged")
          raise ConfigError(f"the checkpoint's data position ({directory}) has no record {key} (it holds "
                            f"{', '.join(held[:4])}{' ...' if len(held) > 4 else ''}); resume with the saved run's "
                            "data.num_shards")
        return json.loads(path.read_text())
      it.set_portable_state(read)
      return it
    path = directory / _process_file()
    if not path.exists():
      written = per_process[0].split("-of-")[-1][:-5] if per_process else "another number of"
      raise ConfigError(f"the checkpoint's data position ({directory}) was written per process by {written} "
                        f"processes; resume it on {written} processes (this run has {jax.process_count()})")
    text = path.read_text()
    it.set_state(text.encode() if hasattr(it, "start_prefetch") else json.loads(text))  # non-grain: bytes
    return it

  def metadata(self, directory):
    del directory
    return None

  def structure(self, directory):
    del directory
    return None

  def finalize(self, directory):
    del directory

  def close(self):
    pass

  @classmethod
  def typestr(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _process_file() -> str:
  return f"process_{jax.process_index()}-of-{jax.process_count()}.json"


@ocp.args.register_with_handler(DataPositionHandler, for_save=True)
@dataclasses.dataclass
class DataPositionSave(ocp.args.CheckpointArgs):
  item: Any


@ocp.args.register_with_handler(DataPositionHandler, for_restore=True)
@dataclasses.dataclass
class DataPositionRestore(ocp.args.CheckpointArgs):
  item: Any


@contextlib.contextmanager
def _quiet_orbax():
  """Orbax's absl WARNING lines while a read-only manager opens or a step's metadata is read (they name no
  problem: eval and decode only read); any other level and any other time are untouched."""
  logger = logging.getLogger("absl")
  previous = logger.level
  logger.setLevel(max(previous, logging.ERROR))
  try:
    yield
  finally:
    logger.setLevel(previous)


class Checkpointer:
  def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True, read_only: bool = False):
    _install_array_handler()
    self.directory = os.path.abspath(directory)
    # read-only: the settings orbax would otherwise reset with a warning line each (twice per eval / decode)
    options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else max_to_keep,
                                           save_interval_steps=0 if read_only else 1,
                                           enable_async_checkpointing=async_save,
                                           create=not read_only, read_only=read_only,
                                           cleanup_tmp_directories=not read_only)
    with _quiet_orbax() if read_only else contextlib.nullcontext():   # and its "directory is read only" line
      self._mgr = ocp.CheckpointManager(self.directory, options=options)
    self._pending: int | None = None   # the step of the asynchronous save in flight

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def reload(self) -> None:
    """Re-reads the committed steps from disk (a reader beside a writing trainer)."""
    self._mgr.reload()

  def all_steps(self) -> list[int]:
    return sorted(self._mgr.all_steps())

  def save(self, step: int, state: Any, data_iter: Any, meta: dict, force: bool = True) -> bool:
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iter is not None:
      items["data_iter"] = DataPositionSave(data_iter)
    with self._writing(self._pending if self._pending is not None else step):   # a failed async save surfaces here
      self._mgr.wait_until_finished()
    self._pending = step
    with self._writing(step):
      saved = self._mgr.save(step, args=ocp.args.Composite(**items), force=force)
    return saved

  @contextlib.contextmanager
  def _writing(self, step: int):
    """Turns a failed write (full disk, quota, I/O error) into one StorageError naming the step and what is safe."""
    try:
      yield
    except Exception as e:  # noqa: BLE001 - orbax / tensorstore / OS errors of a write
      self._pending = None
      why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
      committed = [s for s in self._committed_steps() if s != step]
      safe = (f"step {committed[-1]} is intact and a restart resumes from it" if committed
              else "no earlier step was committed")
      raise StorageError(f"writing checkpoint step {step} to {self.directory} failed ({why}); {safe}; free space "
                         "or fix the directory, then restart") from None

  def _committed_steps(self) -> list[int]:
    """Step directories committed on disk (orbax renames a finished step to its number)."""
    try:
      return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())
    except OSError:
      return []

  def restore(self, step: int, abstract_state: Any, data_iter: Any = None) -> tuple[Any, Any]:
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      items["data_iter"] = DataPositionRestore(data_iter)
    with _draining_restores():
      restored = self._mgr.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], restored.get("data_iter") if data_iter is not None else None

  def meta(self, step: int) -> dict:
    return dict(self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

  def restore_params(self, step: int, abstract_params: Any) -> Any:
    """Weights only: reads the `params` subtree of the saved state onto the given shardings."""
    restored = self._mgr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item={"params": abstract_params},
        restore_args=jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding), {"params": abstract_params}),
        partial_restore=True)))
    return restored["state"]["params"]

  def saved_params_abstract(self, step: int) -> Any:
    """The saved `params` tree as ShapeDtypeStructs on this process's first device (from the metadata only)."""
    with _quiet_orbax():   # "Metadata file does not exist": a composite step keeps it one level up; no problem
      saved = ocp.PyTreeCheckpointer().metadata(os.path.join(self.directory, str(step), "state"))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device),
                        saved.item_metadata.tree["params"],
                        is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))

  def restore_matching_params(self, step: int, abstract_params: Any, fresh_params: Any) -> tuple[Any, dict]:
    """Weights-only initialisation across model families (e.g. masked LM -> classifier): the parameters whose
    path and shape exist in the checkpoint are loaded, the others keep `fresh_params`. Returns (params, report):
    report["loaded"] / ["fresh"] list the paths ("a/b/kernel"), ["fresh_fraction"] is the share of this model's
    weights (by element) left fresh, ["mismatched"] the fresh paths the checkpoint has with another shape."""
    with _quiet_orbax():   # "Metadata file does not exist": a composite step keeps it one level up; no problem
      saved = ocp.PyTreeCheckpointer().metadata(os.path.join(self.directory, str(step), "state"))
    saved_tree = saved.item_metadata.tree["params"]
    flat_abs = flax.traverse_util.flatten_dict(abstract_params)
    flat_saved = flax.traverse_util.flatten_dict(saved_tree)
    match = {k: v for k, v in flat_abs.items() if k in flat_saved and tuple(flat_saved[k].shape) == tuple(v.shape)}
    if not match:
      raise ConfigError(f"checkpoint {self.directory}/{step} shares no parameter (path and shape) with this model")
    loaded = flax.traverse_util.flatten_dict(self.restore_params(step, flax.traverse_util.unflatten_dict(match)))
    flat = flax.traverse_util.flatten_dict(fresh_params)
    flat.update(loaded)
    size = lambda v: int(np.prod(v.shape))
    fresh = [k for k in flat_abs if k not in match]
    report = {"loaded": ["/".join(k) for k in match], "fresh": ["/".join(k) for k in fresh],
              "fresh_fraction": sum(size(flat_abs[k]) for k in fresh) / max(sum(map(size, flat_abs.values())), 1),
              "mismatched": [f"{'/'.join(k)} {list(flat_saved[k].shape)} -> {list(flat_abs[k].shape)}"
                             for k in fresh if k in flat_saved]}
    return flax.traverse_util.unflatten_dict(flat), report

  def set_aside(self, step: int) -> str:
    """Renames an unreadable step directory to `<step>.unreadable` (kept for inspection; orbax ignores it), so the
    run can save that step again. Process 0 renames; every process then re-reads the step list."""
    src = os.path.join(self.directory, str(step))
    dst = f"{src}.unreadable"
    if jax.process_index() == 0:
      n = 1
      while os.path.exists(dst):
        dst, n = f"{src}.unreadable{n}", n + 1
      os.rename(src, dst)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"set_aside_{step}")
    self._mgr.reload()
    return dst

  def wait(self) -> None:
    with self._writing(self._pending if self._pending is not None else -1):
      self._mgr.wait_until_finished()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._mgr.close()


def check_compatible(meta: dict, compat: dict, where: str) -> None:
  """Raises before any restore if a value the family declares in `Family.compat` (e.g. the embedding size)
  differs between the checkpoint and this run."""
  for key, value in compat.items():
    saved = meta.get(key)
    if saved is None or saved == value:
      continue
    if key == "model_vocab_size":
      raise ConfigError(f"checkpoint {where} has model vocabulary size {saved} but this config gives {value}; "
                        f"set --config.model.vocab_size={saved} and the same data.vocab, or use a fresh --workdir")
    raise ConfigError(f"checkpoint {where} has {key}={saved!r} but this config gives {value!r}; use the "
                      "checkpoint's config or a fresh --workdir")


def is_import(meta: dict) -> bool:
  """A Hugging Face import (launch.py --mode=import_hf: weights and the config they imply, no training state)."""
  return "source" in meta
