"""Crash safety with real processes: SIGTERM saves and exits cleanly; SIGKILL during an async save loses nothing
that was committed, and the restart reproduces an uninterrupted run exactly."""
import os
import signal
import subprocess
import time

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
