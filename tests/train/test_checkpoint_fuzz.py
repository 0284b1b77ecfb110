"""Checkpoint corruption, fuzzed: one file of the latest committed step is truncated, bit-flipped, deleted or
emptied, and the run restarts. Every case must end in one of two ways, and never with a traceback:
  - a fallback to the previous committed step with one warning line, then steps 4-6 again bit-identical; or
  - a resume from the latest step where the damaged file is not one a restore reads (orbax keeps some bookkeeping
    files), with the restored state equal to the undamaged one.
Restored values are checked finite and of the stored shapes before training on them (train/restore.py). The default
suite samples four cases (the largest data file, the merged tensorstore file whose loss once printed asyncio
tracebacks, the run metadata, the smallest file); the slow test tries every file x every damage and prints the
counts (cases, fallbacks, resumes, one-line stops, tracebacks)."""
import contextlib
import glob
import io
import os
import random
import shutil

import jax
import numpy as np
import pytest

from tests.helpers import tiny_config, train_losses
from train.errors import ConfigError

MODES = ("truncate", "flip", "delete", "empty")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
  """A tiny 6-step run with checkpoints at steps 3 and 6: (config, workdir, step-6 files relative to the step)."""
  from train.loop import train
  config = tiny_config(**{"train.eval_every": 0, "decode.prompts": ()})
  wd = str(tmp_path_factory.mktemp("pristine"))
  with contextlib.redirect_stdout(io.StringIO()):
    train(config, wd)
  step = os.path.join(wd, "checkpoints", "6")
  files = sorted((f for f in glob.glob(os.path.join(step, "**", "*"), recursive=True) if os.path.isfile(f)),
                 key=lambda f: (os.path.getsize(f), f))
  return config, wd, [os.path.relpath(f, step) for f in files]


def _damage(path: str, mode: str) -> None:
  if mode == "truncate":
    with open(path, "r+b") as fh:
      fh.truncate(os.path.getsize(path) // 2)
  elif mode == "flip":   # every 50th byte on average, at least one
    data = bytearray(open(path, "rb").read())
    r = random.Random(0)
    for _ in range(max(1, len(data) // 50) if data else 0):
      data[r.randrange(len(data))] ^= 0xFF
    open(path, "wb").write(bytes(data))
  elif mode == "delete":
    os.remove(path)
  else:
    open(path, "wb").close()


def _params(config, workdir: str, step: int):
  """The step's parameters, restored onto the experiment's own abstract tree (a damaged bookkeeping file such as
  state/_sharding does not stop a restore, but would stop reading the tree from the step's metadata)."""
  import flax.linen as nn

  from train.checkpoint import Checkpointer
  from train.experiment import build_experiment
  exp = build_experiment(config)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  try:
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
      return jax.device_get(ckpt.restore_params(step, exp.abstract_state.params))
  finally:
    ckpt.close()


def run_case(pristine, tmp_path, rel: str, mode: str, capfd) -> str:
  """Damages `rel` of step 6 in a copy of the pristine run, restarts it, checks the outcome; returns its kind."""
  from train.loop import train
  config, done, _ = pristine
  wd = str(tmp_path / f"{mode}_{rel.replace(os.sep, '_')}")
  shutil.copytree(done, wd)
  _damage(os.path.join(wd, "checkpoints", "6", rel), mode)
  capfd.readouterr()
  try:
    train(config, wd)
    kind = None
  except ConfigError as e:
    kind = "stop"
    assert "\n" not in str(e)
  out, err = capfd.readouterr()
  assert "Traceback" not in out + err, f"{rel} {mode}: a traceback was printed:\n{(out + err)[-1500:]}"
  warnings = [line for line in out.splitlines() if line.startswith("warning:")]
  if kind is None:
    kind = "fallback" if warnings else "resume"
  if kind == "fallback":
    assert len(warnings) == 1 and "is unreadable (" in warnings[0] and warnings[0].endswith("falling back to step 3")
  assert kind != "stop", f"{rel} {mode}: step 3 is intact, yet the run stopped"
  assert train_losses(wd) == train_losses(done), f"{rel} {mode}: steps 4-6 differ from the undamaged run"
  latest = max(int(n) for n in os.listdir(os.path.join(wd, "checkpoints")) if n.isdigit())
  for a, b in zip(jax.tree.leaves(_params(config, wd, latest)), jax.tree.leaves(_params(config, done, 6))):
    np.testing.assert_array_equal(a, b)
  return kind


def _sample(files):
  data = [f for f in files if os.sep + "d" + os.sep in f]
  merged = [f for f in data if f.startswith("state" + os.sep + "d" + os.sep)]
  return [(data[-1], "truncate"), (merged[0], "delete"), (os.path.join("meta", "metadata"), "flip"),
          (files[0], "empty")]


# Exceptions raised in tensorstore's callbacks reach Python's unraisable hook, which prints a traceback in a plain
# run; under pytest they become this warning, made an error here.
UNRAISABLE_IS_AN_ERROR = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


@UNRAISABLE_IS_AN_ERROR
def test_sampled_corruptions_fall_back_or_resume_intact_without_a_traceback(pristine, tmp_path, capfd):
  kinds = [run_case(pristine, tmp_path, rel, mode, capfd) for rel, mode in _sample(pristine[2])]
  assert "fallback" in kinds   # the sample reaches the fallback path


@UNRAISABLE_IS_AN_ERROR
@pytest.mark.slow   # every file of the step x 4 damages (about 70 restarts, 5-8 minutes on 2 cores)
def test_every_file_and_damage_falls_back_or_resumes_intact_without_a_traceback(pristine, tmp_path, capfd):
  counts = {"fallback": 0, "resume": 0}
  for rel in pristine[2]:
    for mode in MODES:
      counts[run_case(pristine, tmp_path, rel, mode, capfd)] += 1
  with capfd.disabled():
    print(f"\ncheckpoint fuzz: {len(pristine[2]) * len(MODES)} cases, {counts['fallback']} fallbacks, "
          f"{counts['resume']} resumes of an intact state, 0 one-line stops, 0 tracebacks")
