"""Restore onto another mesh, weights-only initialisation, refusals (in-process, real orbax checkpoints). Exact
resume of every family: tests/suites/test_conformance.py."""
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from tests.helpers import tiny_config
from train import checkpoint as ckpt_lib
from train.experiment import build_experiment
from train.loop import train


def _final_params(workdir, config, devices=None):
  exp = build_experiment(config, devices)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    state, _ = ckpt.restore(ckpt.latest_step(), exp.abstract_state)
    ckpt.close()
  return state


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("straight"))
  config = tiny_config(**{"mesh.data": 8})
  train(config, wd)
  return wd, config


def test_restore_onto_a_different_mesh(straight):
  wd, config = straight                       # saved from mesh (8, 1, 1)
  other = tiny_config(**{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2})
  a = _final_params(wd, config)
  b = _final_params(wd, other)
  wqkv = b.params["model"]["layers_0"]["attn"]["Wqkv"]["kernel"]
  assert wqkv.sharding.spec[0] == "fsdp" and wqkv.sharding.spec[2] == "tensor"
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_weights_only_initialisation(straight, tmp_path):
  wd_src, config = straight
  config = tiny_config(**{"checkpoint.init_from": wd_src, "train.num_steps": 1, "optim.lr": 0.0,
                          "optim.warmup_steps": 0, "optim.weight_decay": 0.0})
  train(config, str(tmp_path))
  src, dst = _final_params(wd_src, config), _final_params(str(tmp_path), config)
  assert int(dst.step) == 1                   # optimiser state and step start afresh
  for x, y in zip(jax.tree.leaves(src.params), jax.tree.leaves(dst.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))   # lr 0: the loaded weights are unchanged


def test_checkpoint_with_other_vocab_size_is_refused_before_compiling(straight):
  wd, _ = straight
  config = tiny_config(**{"model.vocab_size": 512})
  with pytest.raises(ckpt_lib.ConfigError,
                     match=r"vocabulary size 320 but this config gives 512; set --config.model.vocab_size=320"):
    train(config, wd)


def test_data_positions_written_per_process_restore_on_that_process_count_only(tmp_path):
  """Checkpoints from before per-shard data records hold one grain state list per process: they restore on the
  process count that wrote them, and on another count stop with one line (never a fallback that sets them aside)."""
  import json

  from etils import epath

  from data.pipeline import make_iterator
  from data.vocab import ByteVocabulary
  docs = [f"document {i} " * (i % 7 + 1) for i in range(40)]
  mk = lambda: make_iterator(docs, ByteVocabulary(), seq_len=16, global_batch=4, seed=0, process_index=0,  # noqa
                             process_count=1)
  a = mk()
  next(a)
  old = json.dumps(list(json.loads(a.get_state()).values()))   # the old format: [shard 0's state]
  want = next(a)["tokens"]
  handler = ckpt_lib.DataPositionHandler()
  (tmp_path / "same").mkdir()
  (tmp_path / "same" / "process_0-of-1.json").write_text(old)
  b = handler.restore(epath.Path(tmp_path / "same"), ckpt_lib.DataPositionRestore(mk()))
  np.testing.assert_array_equal(next(b)["tokens"], want)
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "process_0-of-2.json").write_text(old)
  with pytest.raises(ckpt_lib.ConfigError, match=r"written per process by 2 processes; resume it on 2 processes "
                                                 r"\(this run has 1\)"):
    handler.restore(epath.Path(tmp_path / "other"), ckpt_lib.DataPositionRestore(mk()))


def test_small_replicated_arrays_are_saved_without_compiling_slices(tmp_path):
  """A replicated array with less than MIN_REPLICA_SLICE_BYTES per replica is written whole by one replica: saving
  many small arrays compiles nothing (orbax's default compiled one slice per shape, 9 s for ELECTRA-tiny), while a
  large one is still split among its replicas (one compile: the counter's control); both restore exactly."""
  from jax.sharding import NamedSharding, PartitionSpec
  compiles = []

  def listener(event, secs, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(secs)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    replicated = NamedSharding(jax.make_mesh((8,), ("data",)), PartitionSpec())
    small = {f"w{i}": jax.device_put(np.arange((i + 1) * 3, dtype=np.float32).reshape(i + 1, 3), replicated)
             for i in range(12)}
    big = {"big": jax.device_put(np.ones(8 * ckpt_lib.MIN_REPLICA_SLICE_BYTES // 4, np.float32), replicated)}
    counts = []
    for step, state in ((1, small), (2, big)):
      ckpt = ckpt_lib.Checkpointer(str(tmp_path / str(step)))
      before = len(compiles)
      ckpt.save(step, state, None, {})
      ckpt.wait()
      counts.append(len(compiles) - before)
      back, _ = ckpt.restore(step, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                                                state))
      ckpt.close()
      jax.tree.map(np.testing.assert_array_equal, back, state)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert counts[0] == 0 and counts[1] >= 1, counts


def test_a_partial_load_is_refused_unless_asked_for_or_a_frozen_base_loads_whole():
  """checkpoint.init_from's partial-load rule (train/restore.py check_partial): over 10% fresh weights is one line
  unless checkpoint.allow_partial; a family that freezes what it loads (ADJUST's base) may train its own block
  fresh at any share, but every frozen weight must load."""
  from ml_collections import ConfigDict

  from train.restore import check_partial
  cfg = ConfigDict({"init_from": "/w", "allow_partial": False})
  head = {"fresh": ["head/w"], "loaded": ["body/w"], "fresh_fraction": 0.05, "mismatched": []}
  wide = {"fresh": ["body/w"], "loaded": ["head/w"], "fresh_fraction": 0.6, "mismatched": ["body/w [4] -> [8]"]}
  check_partial(head, cfg)                                     # a fine-tune's new head
  with pytest.raises(ckpt_lib.ConfigError, match=r"would leave 60% of the weights fresh \(1 of 2: body/w \[4\] -> "
                                                 r"\[8\]\); match its model\.\* keys"):
    check_partial(wide, cfg)
  check_partial(wide, ConfigDict({"init_from": "/w", "allow_partial": True}))
  frozen_body = lambda path: path[0] == "body"   # noqa: E731
  check_partial({**head, "fresh_fraction": 0.6}, cfg, frozen_body)   # the unfrozen block trains fresh
  with pytest.raises(ckpt_lib.ConfigError, match=r"lacks 1 of the weights this family freezes \(body/w\)"):
    check_partial(wide, cfg, frozen_body)
