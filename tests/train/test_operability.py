"""Operability: ahead-of-time sizing (`--mode=compile_only`) and the profiler window of the training loop."""
import glob
import json
import os

import pytest

from tests.helpers import run_launch, time_slice, tiny_config
from train.errors import ConfigError

BATCH = 16   # over the tests' 8 simulated devices


@pytest.fixture(scope="module")
def reports():
  """compile_only reports of the tiny config at batch 16 and 32, 8 devices (data-parallel)."""
  from train.aot import compile_report
  from train.experiment import build_experiment
  return [compile_report(build_experiment(tiny_config(**{"mesh.data": 8, "train.batch_size": b})))
          for b in (BATCH, 2 * BATCH)]


def test_compile_only_reports_per_device_memory_and_flops(reports):
  one, two = reports
  assert one["num_devices"] == 8 and one["mesh"]["data"] == 8
  for r in reports:
    for step in ("train_step", "eval_step"):
      m = r[step]
      assert m["argument_bytes"] > 0 and m["temp_bytes"] > 0 and m["flops_per_device"] > 0
      assert m["total_bytes"] == m["argument_bytes"] + m["output_bytes"] - m["alias_bytes"] + m["temp_bytes"]
    # The donated state is aliased by the new state: the outputs add (almost) nothing to the total.
    assert r["train_step"]["alias_bytes"] > 0.9 * r["train_step"]["output_bytes"]
  # Doubling the batch adds exactly the extra batch rows to each device's arguments (3 int32 arrays [B, 32] over 8
  # devices), raises the temporaries (activations) and the FLOPs, and leaves the state alone.
  seq = 32
  assert two["train_step"]["argument_bytes"] - one["train_step"]["argument_bytes"] == 3 * 4 * BATCH * seq // 8
  assert two["train_step"]["temp_bytes"] > one["train_step"]["temp_bytes"]
  assert 1.5 < two["train_step"]["flops_per_device"] / one["train_step"]["flops_per_device"] < 2.5
  assert two["model_flops_per_step"] == 2 * one["model_flops_per_step"]
  # XLA's count (all elementwise work and AdamW included) is the same order as our FLOP model's.
  xla = one["train_step"]["flops_per_device"] * one["num_devices"]
  assert 0.5 < xla / one["model_flops_per_step"] < 4


def test_compile_only_command_prints_memory_and_flops_and_refuses_a_step_that_does_not_fit(tmp_path):
  r = run_launch(str(tmp_path), "--mode=compile_only", "--num_cpu_devices=4", "--config.mesh.data=4",
                 "--device_memory_gib=1", num_devices=1)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "4 x cpu devices" in r.stdout and "capacity per device: 1.00 GiB" in r.stdout
  assert "train_step: per device arguments" in r.stdout and "% of capacity)" in r.stdout
  report = json.loads(r.stdout.strip().splitlines()[-1])
  assert report["num_devices"] == 4 and report["train_step"]["temp_bytes"] > 0
  assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))   # nothing ran
  from train.aot import GIB, check_fits
  need = max(report["train_step"]["total_bytes"], report["eval_step"]["total_bytes"])
  check_fits(report, need)   # exactly full fits
  with pytest.raises(ConfigError, match=r"^the train step needs 0\.\d+ GiB per device, more than the 0\.\d+ GiB a "
                                        r"cpu device holds; lower --config\.train\.batch_size \(or raise "
                                        r"--config\.train\.grad_accum_steps, with train\.grad_accum_unroll=False\), "
                                        r"set --config\.model\.remat, or shard "
                                        r"the state with --config\.mesh\.fsdp \(or --config\.mesh\.tensor\)$"):
    check_fits(report, need - 1)
  assert need < GIB


@pytest.mark.slow   # compiles the 150M-parameter step twice for 8 devices (about 2 minutes on 2 cores)
def test_compile_only_on_the_base_shape_with_8_devices(tmp_path):
  out = []
  for batch in (16, 32):
    r = run_launch(str(tmp_path), "--mode=compile_only", "--num_cpu_devices=8", "--config.mesh.data=8",
                   "--config.data.vocab=byte", f"--config.train.batch_size={batch}", num_devices=1,
                   config="configs/modernbert_mlm.py:base", timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    out.append(json.loads(r.stdout.strip().splitlines()[-1]))
  assert out[0]["num_devices"] == 8 and out[0]["model_flops_per_step"] > 5e12   # 150M parameters x 16 x 512 tokens
  assert 0.5 < out[0]["train_step"]["flops_per_device"] * 8 / out[0]["model_flops_per_step"] < 4
  assert out[1]["train_step"]["temp_bytes"] > 1.5 * out[0]["train_step"]["temp_bytes"]


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
  """A tiny 6-step run (checkpoints at 3 and 6) that profiles steps 2-3: (config, workdir, stdout)."""
  import contextlib
  import io

  from train.loop import train
  config = tiny_config(**{"profile.start_step": 2, "profile.num_steps": 2, "train.eval_every": 0,
                          "decode.prompts": ()})
  wd = str(tmp_path_factory.mktemp("profiled"))
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    train(config, wd)
  return config, wd, out.getvalue()


def test_profiler_traces_the_configured_window(profiled_run):
  _, wd, out = profiled_run
  traces = glob.glob(os.path.join(wd, "profile", "plugins", "profile", "*", "*.xplane.pb"))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
  data = open(traces[0], "rb").read()
  assert b"train" in data and b"step_num" in data     # the StepTraceAnnotation of each traced step
  assert "profile of steps 2-3 written to" in out


def _damage(step_dir):
  """Truncates every data file of a checkpoint step's state to half its size (a partly written copy)."""
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True) if os.path.isfile(f)]
  assert files
  for f in files:
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 2)


def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_step(profiled_run, tmp_path, capsys):
  import shutil

  from tests.helpers import train_losses
  from train.loop import train
  config, done, _ = profiled_run
  wd = str(tmp_path / "run")
  shutil.copytree(done, wd)
  before = train_losses(wd)
  ckpts = os.path.join(wd, "checkpoints")
  _damage(os.path.join(ckpts, "6"))
  train(config, wd)
  warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
  assert len(warnings) == 1 and warnings[0].startswith(f"warning: checkpoint step 6 in {ckpts} is unreadable (")
  assert warnings[0].endswith(f"set aside as {ckpts}/6.unreadable, falling back to step 3")
  assert train_losses(wd) == before                     # steps 4-6 again, bit-identical
  assert sorted(os.listdir(ckpts)) == ["3", "6", "6.unreadable"]
  _damage(os.path.join(ckpts, "3"))
  _damage(os.path.join(ckpts, "6"))
  with pytest.raises(ConfigError, match=rf"no readable checkpoint in {ckpts}: step 3 is unreadable \("):
    train(config, wd)


@pytest.mark.slow   # four tiny runs, one in a subprocess (about a minute)
def test_a_failed_checkpoint_write_stops_with_one_line_and_keeps_the_previous_step(tmp_path):
  """A disk that refuses the step-6 save (the process's file-size limit stands in for a full disk: writes past it
  fail with EFBIG): one line naming the step and the intact one, exit 1; a restart resumes from step 3."""
  import subprocess

  from tests.helpers import ROOT, launch_cmd, subprocess_env, train_losses
  from train.loop import train
  config = tiny_config(**{"train.eval_every": 0, "decode.prompts": ()})
  ref, wd = str(tmp_path / "ref"), str(tmp_path / "run")
  train(config, ref)
  train(time_slice(config, 3), wd)

  # 64 KiB per file: metrics and events fit, the checkpoint's arrays do not. Set by a small Python that then execs
  # launch.py (a preexec_fn would run Python in a child forked from this multithreaded JAX process).
  limited = ["-c", "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10)); "
             "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"]
  cmd = launch_cmd(wd, "--config.train.eval_every=0", "--config.decode.prompts=()")
  r = subprocess.run([cmd[0], *limited, *cmd[1:]], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 1, r.stderr[-2000:]
  [last] = [line for line in r.stderr.splitlines() if line.startswith("error:")]   # (orbax logs its own trace too)
  assert last.startswith(f"error: writing checkpoint step 6 to {wd}/checkpoints failed (")
  assert "step 3 is intact and a restart resumes from it" in last
  assert sorted(n for n in os.listdir(os.path.join(wd, "checkpoints")) if n.isdigit()) == ["3"]
  train(config, wd)
  assert train_losses(wd) == train_losses(ref)


def test_follower_evaluates_each_committed_step_once_and_writes_nothing_into_the_run(profiled_run, tmp_path):
  """eval --follow on a finished run: steps 3 and 6 once each, the last one equal to the trainer's own final
  evaluation; a restarted follower evaluates nothing again; the checkpoint folder is untouched."""
  import shutil

  from train.follow import follow
  _, done, _ = profiled_run
  wd = str(tmp_path / "run")
  shutil.copytree(done, wd)
  ckpts = os.path.join(wd, "checkpoints")
  listing = sorted(os.path.relpath(os.path.join(d, f), ckpts) for d, _, fs in os.walk(ckpts) for f in fs)
  notes = []
  assert follow(wd, poll_s=0.1, timeout_s=5, note=notes.append) == [3, 6]
  records = [json.loads(line) for line in open(os.path.join(wd, "eval_results.jsonl"))]
  assert [r["step"] for r in records] == [3, 6] and all(r["follow"] for r in records)
  trainer = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl")) if '"eval"' in line]
  assert abs(records[-1]["loss"] - trainer[-1]["loss"]) < 1e-6
  assert glob.glob(os.path.join(wd, "eval_follow", "events.out.tfevents.*"))
  assert follow(wd, poll_s=0.1, timeout_s=1, note=notes.append) == []
  assert sorted(os.path.relpath(os.path.join(d, f), ckpts) for d, _, fs in os.walk(ckpts) for f in fs) == listing


@pytest.mark.slow   # a trainer and a follower at once, two processes (about a minute)
def test_follower_beside_a_running_trainer_evaluates_every_committed_step_once(tmp_path):
  import subprocess

  from tests.helpers import ROOT, launch_cmd, subprocess_env
  wd = str(tmp_path)
  args = ["--config.train.num_steps=8", "--config.train.checkpoint_every=2", "--config.checkpoint.max_to_keep=10",
          "--config.train.eval_every=0"]
  trainer = subprocess.Popen(launch_cmd(wd, *args), cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  follower = subprocess.run(launch_cmd(wd, "--mode=eval", "--follow", "--follow_poll_s=0.2",
                                       "--follow_timeout_s=120", config=None), cwd=ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=600)
  trainer.communicate(timeout=600)
  assert trainer.returncode == 0 and follower.returncode == 0, follower.stderr[-2000:]
  steps = [json.loads(line)["step"] for line in open(os.path.join(wd, "eval_results.jsonl"))]
  assert steps == [2, 4, 6, 8]
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["2", "4", "6", "8"]


def test_a_failing_tracker_warns_once_and_training_goes_on(capsys):
  from train.experiment import check_trainer_config
  from train.trackers import Guarded

  class Flaky:
    calls = 0

    def scalars(self, prefix, values, step):
      Flaky.calls += 1
      raise ConnectionError("tracker service unreachable")

  t = Guarded("flaky", Flaky)
  for step in range(3):
    t.scalars("train", {"loss": 1.0}, step)      # raises inside on the first call only, never outside
  t.text("samples", "x", 3)
  t.close()
  lines = capsys.readouterr().out.splitlines()
  assert lines == ["warning: tracker flaky failed (ConnectionError: tracker service unreachable); training "
                   "continues without it"] and Flaky.calls == 1 and not t.active
  broken = Guarded("broken", lambda: 1 / 0)       # a tracker that cannot even start
  broken.scalars("train", {"loss": 1.0}, 0)
  assert not broken.active and capsys.readouterr().out.count("warning: tracker broken failed") == 1
  with pytest.raises(ConfigError, match=r"tracker='mlflow' is not one of \['tensorboard', 'wandb'\]"):
    check_trainer_config(tiny_config(**{"tracker": "mlflow"}))


@pytest.mark.slow   # starts the wandb service (offline); ~30 s
def test_wandb_tracker_logs_offline_beside_tensorboard(tmp_path, monkeypatch):
  from tests.helpers import require
  from train.loop import train
  require("wandb")
  monkeypatch.delenv("WANDB_MODE", raising=False)
  config = tiny_config(**{"tracker": "wandb", "train.eval_every": 3})
  train(time_slice(config, 3), str(tmp_path))
  train(config, str(tmp_path))                    # resumed: the same W&B run continues
  runs = glob.glob(os.path.join(tmp_path, "wandb", "offline-run-*", "run-*.wandb"))
  run_id = open(os.path.join(tmp_path, "wandb_run_id")).read().strip()
  assert runs and all(r.endswith(f"run-{run_id}.wandb") for r in runs)
  assert any(b"train/loss" in open(r, "rb").read() and b"eval/loss" in open(r, "rb").read() for r in runs)
  assert glob.glob(os.path.join(tmp_path, "tensorboard", "events.out.tfevents.*"))


def test_tensorboard_events_are_read_back_by_tensorflow_and_torch_is_not_imported(tmp_path):
  """The TensorBoard tracker's event file holds the logged scalars and text (read back by TensorFlow's own reader),
  and writing it does not import torch, which tensorboardX would otherwise import where it is installed (2.5 s in
  every launch.py process)."""
  import subprocess
  import sys

  from tests.helpers import ROOT, subprocess_env
  # torch and tensorflow are in requirements-test.txt; neither is imported here (6-8 s), only in the subprocess.
  script = f"""
import glob, importlib.util, sys
assert importlib.util.find_spec("torch"), "torch is not installed: the check below would hold trivially"
from train.trackers import TensorBoard
t = TensorBoard({str(tmp_path)!r})
t.scalars("train", {{"loss": 1.25, "accuracy": 0.5}}, 7)
t.text("samples", "import [MASK]", 7)
t.close()
assert "torch" not in sys.modules, "tensorboardX imported torch"
import tensorflow as tf
seen = {{}}
for event in tf.compat.v1.train.summary_iterator(glob.glob({str(tmp_path)!r} + "/events.out.tfevents.*")[0]):
  for v in event.summary.value:
    seen[v.tag] = (event.step, v.simple_value if v.HasField("simple_value") else v.tensor.string_val[0].decode())
print(sorted(seen.items()))
"""
  r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=subprocess_env(),
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.strip().splitlines()[-1] == str(
      [("samples/text_summary", (7, "import [MASK]")), ("train/accuracy", (7, 0.5)), ("train/loss", (7, 1.25))])


def test_an_mfu_above_the_peak_is_not_shown_as_a_figure():
  from train.reporting import mfu_text
  assert mfu_text(0.412) == "MFU 41.2%" and mfu_text(1.0) == "MFU 100.0%"
  assert mfu_text(1.37) == ("MFU n/a (the step ran at 137% of the assumed peak: set train.peak_flops_per_device to "
                            "the chip's)")
