"""Two real processes (4 CPU devices each) under jax.distributed on localhost match one 8-device process."""
import subprocess

import portpicker

from tests.helpers import ROOT, launch_cmd, subprocess_env, tiny_config, train_losses
from train.loop import train

ARGS = ["--config.train.num_steps=3", "--config.data.num_shards=2", "--config.train.eval_every=0",
        "--config.distributed.init_timeout=60", "--config.mesh.fsdp=2"]


def test_two_processes_match_one_process(tmp_path):
  ref = str(tmp_path / "one_process")
  train(tiny_config(**{"train.num_steps": 3, "data.num_shards": 2, "train.eval_every": 0, "mesh.fsdp": 2}), ref)

  wd = str(tmp_path / "two_processes")
  port = portpicker.pick_unused_port()
  procs = [subprocess.Popen(launch_cmd(wd, *ARGS, f"--coordinator_address=localhost:{port}", "--num_processes=2",
                                       f"--process_id={i}"),
                            cwd=ROOT, env=subprocess_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "process 0/2 | 4 local / 8 global devices" in outs[0][0]
  assert "process 1/2 | 4 local / 8 global devices" in outs[1][0]
  got, want = train_losses(wd), train_losses(ref)
  assert sorted(got) == [1, 2, 3]
  for s in (1, 2, 3):
    assert abs(got[s] - want[s]) < 1e-5, (s, got[s], want[s])
