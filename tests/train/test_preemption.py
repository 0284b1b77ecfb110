"""Crash safety with real processes: SIGTERM saves and exits cleanly; SIGKILL during an async save loses nothing
that was committed, and the restart reproduces an uninterrupted run exactly."""
import os
import signal
import subprocess
import time

import pytest

from tests.helpers import ROOT, launch_cmd, run_launch, subprocess_env, train_losses


def _wait_for(predicate, proc, timeout=120.0, interval=0.005):
  end = time.time() + timeout
  while time.time() < end:
    if predicate():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(interval)
  return False


def _committed_steps(wd):
  d = os.path.join(wd, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _lines(path):
  return sum(1 for _ in open(path)) if os.path.exists(path) else 0


def test_sigterm_saves_the_current_step_and_restart_continues(tmp_path):
  wd = str(tmp_path)
  args = ["--config.train.num_steps=100000", "--config.train.checkpoint_every=0", "--config.train.eval_every=0",
          "--config.train.log_every=1"]
  proc = subprocess.Popen(launch_cmd(wd, *args), cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  assert _wait_for(lambda: _lines(os.path.join(wd, "metrics.jsonl")) >= 3, proc), proc.communicate()[1][-3000:]
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-3000:]
  assert "SIGTERM: saved a checkpoint" in out
  last_logged = max(train_losses(wd))
  assert _committed_steps(wd) == [last_logged]   # the step it was at, though no checkpoint was scheduled
  r = run_launch(wd, f"--config.train.num_steps={last_logged + 2}", "--config.train.eval_every=0")
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"resuming from {os.path.join(wd, 'checkpoints')} step {last_logged}" in r.stdout
  assert max(train_losses(wd)) == last_logged + 2


def test_sigkill_during_async_save_resumes_from_last_committed_step(tmp_path):
  args = ["--config.train.num_steps=12", "--config.train.checkpoint_every=1", "--config.train.eval_every=0",
          "--config.train.log_every=1"]
  ref = str(tmp_path / "reference")
  r = run_launch(ref, *args)
  assert r.returncode == 0, r.stderr[-3000:]

  wd = str(tmp_path / "killed")
  ckpt_dir = os.path.join(wd, "checkpoints")
  proc = subprocess.Popen(launch_cmd(wd, *args), cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)

  def saving_after_step_5():
    if not os.path.isdir(ckpt_dir):
      return False
    started = _lines(os.path.join(wd, "metrics.jsonl")) >= 5
    return started and any("tmp" in n for n in os.listdir(ckpt_dir))

  caught = _wait_for(saving_after_step_5, proc, interval=0.001)
  proc.kill()
  proc.wait()
  assert caught, "the run ended before an async save could be interrupted"
  committed = _committed_steps(wd)
  assert any("tmp" in n for n in os.listdir(ckpt_dir))   # a half-written step is on disk
  r = run_launch(wd, *args)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"resuming from {ckpt_dir} step {committed[-1]}" in r.stdout
  assert not any("tmp" in n for n in os.listdir(ckpt_dir))  # cleaned up
  got, want = train_losses(wd), train_losses(ref)
  assert sorted(got) == sorted(want) == list(range(1, 13))
  assert [got[s] for s in range(1, 13)] == [want[s] for s in range(1, 13)]


def _final_params(wd):
  import jax
  import numpy as np

  from train import checkpoint as ckpt_lib
  ckpt = ckpt_lib.Checkpointer(os.path.join(wd, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  params = ckpt.restore_params(step, ckpt.saved_params_abstract(step))
  ckpt.close()
  return step, [np.asarray(x) for x in jax.tree.leaves(params)]


@pytest.mark.slow   # 20+ kills and restarts of real processes (several minutes)
def test_twenty_sigkills_at_random_moments_lose_nothing():
  """SIGKILL at random moments of a run with asynchronous saves every step (before, during and after saves),
  restarted each time: every restart resumes from the last committed step or later (nothing committed is lost,
  no checkpoint is unreadable), and the run ends bit-identical to an uninterrupted one (losses and parameters)."""
  import random
  import tempfile

  import numpy as np
  args = ["--config.train.num_steps=30", "--config.train.checkpoint_every=1", "--config.train.eval_every=0",
          "--config.train.log_every=1", "--config.decode.prompts=()"]
  rng = random.Random(0)
  with tempfile.TemporaryDirectory() as tmp:
    ref = os.path.join(tmp, "reference")
    t = time.time()
    r = run_launch(ref, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    duration = time.time() - t
    trials, chains = 0, 0
    while trials < 20:
      wd = os.path.join(tmp, f"chain{chains}")
      chains += 1
      while True:
        committed = _committed_steps(wd)
        proc = subprocess.Popen(launch_cmd(wd, *args), cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
          out, err = proc.communicate(timeout=rng.uniform(0.3, 1.0) * duration)
        except subprocess.TimeoutExpired:
          proc.kill()
          out, err = proc.communicate()
          trials += 1
          assert "warning:" not in out, out     # no unreadable checkpoint was ever found
          if committed:
            resumed = [int(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.startswith("resuming from")]
            assert not resumed or resumed[0] >= committed[-1]
          continue
        assert proc.returncode == 0, err[-3000:]
        if committed:
          assert f"resuming from {os.path.join(wd, 'checkpoints')} step {committed[-1]}" in out
        break
      got, want = train_losses(wd), train_losses(ref)
      assert [got[s] for s in range(1, 31)] == [want[s] for s in range(1, 31)]
      (s1, p1), (s2, p2) = _final_params(wd), _final_params(ref)
      assert s1 == s2 == 30
      for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)
    print(f"{trials} SIGKILL trials over {chains} runs: 0 lost or corrupted states")
