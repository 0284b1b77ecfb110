"""Elastic restore with real processes: a checkpoint written by one 8-device process resumes under jax.distributed
on 2 processes x 4 devices (localhost), and (slow) on 4 devices and on 1, the losses continuing within 1e-5 of the
original mesh's and the data stream continuing where it stopped (data.num_shards=0 keeps the first start's shard).
"""
import shutil
import subprocess

import portpicker
import pytest

from tests.helpers import ROOT, launch_cmd, subprocess_env, time_slice, tiny_config, train_losses
from train.loop import train

SETTINGS = {"train.num_steps": 4, "train.checkpoint_every": 2, "train.eval_every": 0, "mesh.fsdp": 2}
ARGS = [f"--config.{k}={v}" for k, v in SETTINGS.items()] + ["--config.train.log_every=1"]


@pytest.fixture(scope="module")
def original(tmp_path_factory):
  """(workdir holding only the step-2 checkpoint, the 8-device run's losses of steps 1-4)."""
  root = tmp_path_factory.mktemp("elastic")
  config = tiny_config(**SETTINGS, **{"train.log_every": 1})
  train(time_slice(config, 2), str(root / "at2"))     # stopped after the step-2 checkpoint, as a preemption would
  shutil.copytree(root / "at2", root / "full")
  train(config, str(root / "full"))                    # the original mesh continues to step 4
  losses = train_losses(str(root / "full"))
  assert sorted(losses) == [1, 2, 3, 4]
  return root / "at2", losses


def _resume(original, tmp_path, processes: int, devices: int, *args):
  src, want = original
  wd = str(tmp_path / "resumed")
  shutil.copytree(src, wd)
  port = portpicker.pick_unused_port()
  dist = (lambda i: [f"--coordinator_address=localhost:{port}", f"--num_processes={processes}", f"--process_id={i}",
                     "--config.distributed.init_timeout=60"]) if processes > 1 else (lambda i: [])
  procs = [subprocess.Popen(launch_cmd(wd, *ARGS, *dist(i), *args), cwd=ROOT, env=subprocess_env(devices),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert f"resuming from {wd}/checkpoints step 2" in outs[0][0]
  got = train_losses(wd)
  for s in (3, 4):
    assert abs(got[s] - want[s]) < 1e-5, (s, got[s], want[s])
  return outs


def test_8_device_checkpoint_resumes_on_2_processes_of_4_devices(original, tmp_path):
  outs = _resume(original, tmp_path, 2, 4)
  assert "process 0/2 | 4 local / 8 global devices" in outs[0][0]
  assert "process 1/2 | 4 local / 8 global devices" in outs[1][0]
  assert "data.num_shards=0: reading the checkpoint's 1 data shard(s) on 2 process(es)" in outs[0][0]


@pytest.mark.slow
@pytest.mark.parametrize("devices", [4, 1])
def test_8_device_checkpoint_resumes_on_fewer_devices(original, tmp_path, devices):
  _resume(original, tmp_path, 1, devices, f"--config.mesh.fsdp={min(devices, 2)}")
