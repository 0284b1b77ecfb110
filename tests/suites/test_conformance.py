"""Conformance: every registered family (`families.registered()`) at the tiny size of its registered `smoke` config
goes through launch.py's code path (`train.modes.run`) and keeps the trainer's promises:
  - it trains, checkpoints and evaluates (finite losses at every step, a checkpoint at every step here), and the
    parameters it marks frozen (`Family.frozen`) end bit-identical to the run they were loaded from;
  - a run stopped after a checkpoint and restarted is bit-identical to an uninterrupted one (losses and weights);
  - gradient accumulation over 2 micro-batches gives the uninterrupted run's first update (the objective draws its
    noise in `prepare`; dropout, drawn inside the module per micro-batch, is switched off in these runs);
  - `--mode=eval` reads the stored config and reproduces the run's final evaluation;
  - `--mode=decode` decodes where the family has a decode hook (and says it has none otherwise), and a second
    call in the same process lowers no program (samplers jitted once, parameters as arguments).
Runs use batch 16 on the 8 test devices, so a micro-batch of 8 keeps the mesh and sharding of the plain step.
A new family joins by registering with `smoke=` (configs/families/__init__.py `register`).
"""
import importlib
import json
import os
import shutil

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import families
from tests.helpers import time_slice, train_losses
from train.checkpoint import Checkpointer
from train.errors import ConfigError
from train.experiment import build_experiment
from train.modes import run
from train.loop import train
from train.stored_config import apply_overrides

FAMILIES = families.registered()
STEPS = 4
LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"   # one per program jitted afresh


def smoke_config(name: str, **overrides):
  """The family's registered smoke config: STEPS steps of batch 16, a checkpoint at every step (all kept), one
  evaluation at the end, no dropout."""
  reg = families.registration(name)
  assert reg.smoke, f"{name}: register it with smoke='configs/<file>.py[:arg]' (a config that trains in seconds)"
  path, _, arg = reg.smoke.partition(":")
  config = importlib.import_module(path.removesuffix(".py").replace("/", ".")).get_config(arg or None)
  assert config.model.name == name, f"{name}: smoke={reg.smoke!r} configures model.name={config.model.name!r}"
  config.unlock()
  t = config.train
  t.num_steps, t.batch_size, t.checkpoint_every, t.eval_every, t.log_every, t.sample_every = STEPS, 16, 1, STEPS, 1, 0
  config.checkpoint.max_to_keep = STEPS
  if "model.dropout_rate" in reg.keys:
    config.model.dropout_rate = 0.0
  apply_overrides(config, overrides)
  config.lock()
  return config


def _adjust_base(tmp_path_factory) -> dict:
  """ADJUST trains on a frozen MDLM and its sequential trajectories: a 4-step configs/mdlm.py:tiny run and 16
  trajectories written by its --mode=decode."""
  base = smoke_config("mdlm")
  base_dir = str(tmp_path_factory.mktemp("adjust_base"))
  train(base, base_dir)
  traj = os.path.join(base_dir, "trajectories.npz")
  run(base, base_dir, "decode", overrides={"decode.trajectories": 16, "decode.trajectory_file": traj})
  return {"checkpoint.init_from": base_dir, "objective.trajectory_file": traj}


PREREQUISITES = {"adjust": _adjust_base}   # families whose smoke config reads another run


@pytest.fixture(scope="module", params=FAMILIES)
def family_run(request, tmp_path_factory):
  """(name, config, workdir, final eval metrics, the prerequisites' overrides) of an uninterrupted STEPS-step run
  through `run`."""
  name = request.param
  extra = PREREQUISITES[name](tmp_path_factory) if name in PREREQUISITES else {}
  config = smoke_config(name, **extra)
  workdir = str(tmp_path_factory.mktemp(name))
  return name, config, workdir, run(config, workdir, "train"), extra


def _params_at(exp, workdir, step):
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    params = ckpt.restore_params(step, exp.abstract_state.params)
    ckpt.close()
  return jax.device_get(params)


def test_trains_checkpoints_and_evaluates(family_run):
  name, config, workdir, final, _ = family_run
  losses = train_losses(workdir)
  assert sorted(losses) == list(range(1, STEPS + 1)), name
  assert all(np.isfinite(v) for v in losses.values()), (name, losses)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == [str(s) for s in range(1, STEPS + 1)]
  assert final and all(np.isfinite(v) for v in final.values()), (name, final)
  exp = build_experiment(config)
  if exp.family.frozen is not None:        # e.g. ADJUST's base: bit-identical to the run it was loaded from
    source = Checkpointer(os.path.join(config.checkpoint.init_from, "checkpoints"), read_only=True)
    step = source.latest_step()
    start = jax.device_get(source.restore_params(step, source.saved_params_abstract(step)))
    source.close()
    frozen = {p: x for p, x in jax.tree_util.tree_leaves_with_path(_params_at(exp, workdir, STEPS))
              if exp.family.frozen(tuple(k.key for k in p))}
    assert frozen, name
    for p, x in frozen.items():
      y = start
      for k in p:
        y = y[k.key]
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"{name}: {jax.tree_util.keystr(p)}")


def test_resume_is_bit_identical(family_run, tmp_path):
  """The uninterrupted run's workdir cut back to its step-2 checkpoint (as a run killed after it leaves it) and
  restarted: steps 3 .. STEPS and the final weights are bit-identical."""
  name, config, ref_dir, _, _ = family_run
  workdir = str(tmp_path / "resumed")
  shutil.copytree(ref_dir, workdir)
  for step in range(3, STEPS + 1):
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(step)))
  run(config, workdir, "train")                    # restores step 2: weights, optimiser, data position, rng
  ref, got = train_losses(ref_dir), train_losses(workdir)
  assert [got[s] for s in range(1, STEPS + 1)] == [ref[s] for s in range(1, STEPS + 1)], name
  exp = build_experiment(config)
  for x, y in zip(jax.tree.leaves(_params_at(exp, ref_dir, STEPS)), jax.tree.leaves(_params_at(exp, workdir, STEPS))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def _step_one(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return next(r for r in map(json.loads, f) if r["split"] == "train" and r["step"] == 1)


def test_accumulating_two_microbatches_gives_the_same_update(family_run, tmp_path):
  """A run with train.grad_accum_steps=2 stopped after its first step against the uninterrupted run's step 1 (its
  checkpoint and its logged metrics): the same batch, the same noise, the sum of two halves' gradients."""
  name, config, ref_dir, _, extra = family_run
  accum = smoke_config(name, **extra, **{"train.grad_accum_steps": 2})
  workdir = str(tmp_path / "accum")
  train(time_slice(accum, 1), workdir)
  got, want = _step_one(workdir), _step_one(ref_dir)
  for k in ("loss", "grad_norm", "param_norm", "update_norm", *(k for k in want if k.endswith("accuracy"))):
    np.testing.assert_allclose(got[k], want[k], rtol=2e-6, atol=1e-7, err_msg=f"{name}: {k}")
  assert want["grad_norm"] > 0, name
  exp = build_experiment(config)
  for x, y in zip(jax.tree.leaves(_params_at(exp, workdir, 1)), jax.tree.leaves(_params_at(exp, ref_dir, 1)),
                  strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6, err_msg=name)


def test_eval_mode_reads_the_stored_config(family_run):
  name, config, workdir, final, _ = family_run
  metrics = run(config, workdir, "eval")
  metrics = {k: v for k, v in metrics.items() if k != "analyses"}
  assert metrics == pytest.approx(final, rel=1e-6), name


def test_decode_mode_compiles_once(family_run, capsys):
  name, config, workdir, _, _ = family_run
  if not _decodes(config):
    with pytest.raises(ConfigError, match=f"model.name='{name}' has no decode mode"):
      run(config, workdir, "decode")
    return
  lowered = []
  listener = lambda event, secs, **kw: lowered.append(event) if event == LOWERING_EVENT else None  # noqa: E731
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    jax.jit(lambda x: x + 1)(np.float32(len(name)))   # the counter's control: a fresh program is lowered
    assert len(lowered) == 1
    first = run(config, workdir, "decode")             # the run's closing samples may have compiled it already
    before = len(lowered)
    second = run(config, workdir, "decode")
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert len(lowered) - before == 0, f"{name}: the second decode call lowered {len(lowered) - before} programs"
  assert second == first and first, name             # same prompts, same seed: the same texts
  prompts = list(config.decode.prompts)
  filled = [out.split("\n  [MASK] ")[0] for out in first]   # fill-mask hooks list each mask's candidates below
  assert not any("[MASK]" in out for p, out in zip(prompts, filled) if "[MASK]" in p), first   # every mask filled
  assert "--- output:" in capsys.readouterr().out
  with pytest.raises(ConfigError, match=r"has no decode.prompts; give the text to decode with --text=\.\.\.$"):
    run(config, workdir, "decode", overrides={"decode.prompts": ()})


def _decodes(config) -> bool:
  from data.sources import vocab_from_config
  return families.build(config, vocab_from_config(config.data)).decode is not None
