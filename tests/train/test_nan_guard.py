"""A finite loss with an infinite gradient at step k stops the run at step k without saving that state: the last
checkpoint is the one before, and it is finite (in-process and through launch.py as one line)."""
import os

import jax
import numpy as np
import pytest

from tests.helpers import run_launch
from tests.suites.test_family_interface import get_config
from train import checkpoint as ckpt_lib
from train.errors import NonFiniteError
from train.experiment import build_experiment
from train.loop import train

K = 3


def _config():
  c = get_config(f"poison={K}")
  c.unlock()
  c.train.checkpoint_every = 1
  c.lock()
  return c


def test_infinite_gradient_at_step_k_is_never_checkpointed(tmp_path):
  wd = str(tmp_path)
  # the loss is finite (it is not listed): only the gradient is poisoned
  with pytest.raises(NonFiniteError,
                     match=rf"non-finite grad_norm (inf|nan), update_norm nan, param_norm nan at step {K}:"):
    train(_config(), wd)
  ckpt = ckpt_lib.Checkpointer(os.path.join(wd, "checkpoints"), read_only=True)
  assert ckpt.all_steps() == list(range(1, K))            # steps 1 .. k-1 saved, step k never
  exp = build_experiment(_config())
  with jax.set_mesh(exp.mesh):
    state, _ = ckpt.restore(K - 1, exp.abstract_state)
  ckpt.close()
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))
  # Auto-resume starts again from the finite step k-1 (and meets the same poisoned step).
  with pytest.raises(NonFiniteError, match=rf"at step {K}"):
    train(_config(), wd)


def test_launch_reports_it_as_one_line(tmp_path):
  r = run_launch(str(tmp_path), "--config.train.checkpoint_every=2",
                 config=f"tests/suites/test_family_interface.py:poison={K}")
  assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
  [line] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert f"at step {K}: stopped without saving it" in line
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
