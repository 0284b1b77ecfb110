"""The workdir's stored config is the source of truth: eval/decode read it, config.json is never overwritten, and
a resume with a config that changes the run's meaning stops with one line listing the keys."""
import json
import os
import re

import pytest

from tests.helpers import tiny_config
from train.errors import ConfigError
from train.modes import run
from train.loop import train

WIDE = {"model.hidden_size": 48, "model.intermediate_size": 64}   # differs from the tiny config's 32 / 48


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("wide"))
  final = train(tiny_config(**WIDE), wd)
  return wd, final


def test_eval_and_decode_use_the_stored_config(wide_run):
  wd, final = wide_run
  before = open(os.path.join(wd, "config.json")).read()
  # The command line's config is the plain tiny one (other widths): the stored one must win.
  metrics = run(tiny_config(), wd, "eval")
  assert metrics["loss"] == pytest.approx(final["loss"], abs=1e-5)
  [text] = run(tiny_config(), wd, "decode", text="import [MASK]s")
  filled, listing = text.split("\n  [MASK] 1: ")       # the filled text, then the mask's top candidates
  assert "[MASK]" not in filled and filled.startswith("import ") and listing.count(" | ") == 4
  assert open(os.path.join(wd, "config.json")).read() == before      # eval/decode write no config


def test_eval_overrides_apply_only_where_they_make_sense(wide_run):
  wd, final = wide_run
  metrics = run(tiny_config(), wd, "eval", overrides={"eval.num_batches": 1})
  assert metrics["num_targets"] < final["num_targets"]                # one batch instead of two
  with pytest.raises(ConfigError, match=r"--mode=eval uses the run's stored config; --config.model.hidden_size "
                                        r"cannot change there \(allowed: eval, decode, mesh"):
    run(tiny_config(), wd, "eval", overrides={"model.hidden_size": 16})


@pytest.mark.parametrize("overrides, keys", [
    ({}, "model.hidden_size: 48 -> 32; model.intermediate_size: 64 -> 48"),
    ({**WIDE, "optim.lr": 3e-4}, "optim.lr: 0.001 -> 0.0003"),
    ({**WIDE, "data.num_shards": 2}, "data.num_shards: 0 (= 1, one per process at the first start) -> 2"),
])
def test_resume_with_a_different_model_optimiser_or_sharding_is_refused(wide_run, overrides, keys):
  wd, _ = wide_run
  before = open(os.path.join(wd, "config.json")).read()
  with pytest.raises(ConfigError, match="was trained with a different config: " + re.escape(keys)):
    train(tiny_config(**overrides, **{"train.num_steps": 8}), wd)
  assert open(os.path.join(wd, "config.json")).read() == before


def test_a_longer_run_is_allowed_and_says_what_happens_to_the_schedule(wide_run, tmp_path, capsys):
  wd, _ = wide_run
  copy = str(tmp_path / "copy")
  os.system(f"cp -r {wd} {copy}")
  stored = json.load(open(os.path.join(copy, "config.json")))
  train(tiny_config(**WIDE, **{"train.num_steps": 8, "train.checkpoint_every": 8}), copy)
  out = capsys.readouterr().out
  assert "train.num_steps: 6 -> 8: the learning-rate schedule is re-derived for train.num_steps=8 (at step 6 the " \
         "learning rate goes from" in out
  assert json.load(open(os.path.join(copy, "config.json"))) == stored   # never overwritten
  assert sorted(os.listdir(os.path.join(copy, "checkpoints")), key=int)[-1] == "8"


def test_a_key_added_to_the_base_config_since_the_run_started_does_not_block_resuming():
  """A run stored before data.text_field existed resumes when the key holds its default, not when it does not."""
  from train.stored_config import resume_differences, to_jsonable
  config = tiny_config()
  stored = to_jsonable(config)
  del stored["data"]["text_field"]
  assert resume_differences(stored, config) == ([], [])
  config.unlock()
  config.data.text_field = "body"
  assert resume_differences(stored, config)[0] == ["data.text_field: '(absent)' -> 'body'"]


def test_launch_with_only_the_workdir_resumes_a_run_started_with_overrides(tmp_path, capsys):
  """`launch.py --workdir=W` with no --config (train.modes.run with config_given=False, as launch.py passes it,
  and the default job's config as the command line's): the stored config wins, a longer run is allowed, and an
  override that would change what the run trains is one line."""
  from configs.modernbert_mlm import get_config as default_config
  wd = str(tmp_path / "run")
  train(tiny_config(**WIDE, **{"train.num_steps": 3, "train.checkpoint_every": 3}), wd)
  with pytest.raises(ConfigError, match=re.escape(
      "resuming from the stored config: --config.optim.lr (0.001 -> 0.0003) would change what the run trains; "
      "drop it, or start a fresh --workdir")):
    run(default_config(), wd, overrides={"optim.lr": 3e-4}, config_given=False)
  capsys.readouterr()
  run(default_config(), wd, overrides={"train.num_steps": 6}, config_given=False)
  out = capsys.readouterr().out
  assert f"resuming {wd} with its stored config and --config.train.num_steps" in out
  assert "train.num_steps: 3 -> 6: the learning-rate schedule is re-derived" in out
  assert sorted(os.listdir(os.path.join(wd, "checkpoints")), key=int) == ["3", "6"]
  logged = [json.loads(line)["step"] for line in open(os.path.join(wd, "metrics.jsonl"))
            if json.loads(line)["split"] == "train"]
  assert logged == sorted(set(logged)) and logged[-1] == 6     # steps 1-3, then 4-6: nothing trained twice
  assert json.load(open(os.path.join(wd, "config.json")))["model"]["hidden_size"] == 48
  # launch.py itself: no --config flag means the stored config (its refusal comes before anything is built).
  from tests.helpers import run_launch
  r = run_launch(wd, "--config.optim.lr=3e-4", config=None, timeout=180)
  assert r.returncode == 2 and "Traceback" not in r.stderr and "error: resuming from the stored config: " \
      "--config.optim.lr (0.001 -> 0.0003) would change what the run trains" in r.stderr, r.stderr[-2000:]
