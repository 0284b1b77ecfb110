"""The main entry point end to end, as a user runs it: train, then eval and decode from the checkpoint."""
import glob
import json
import os

from tests.helpers import run_launch


def test_launch_trains_checkpoints_evaluates_and_decodes(tmp_path):
  wd = str(tmp_path / "run")
  r = run_launch(wd, "--config.train.num_steps=4", "--config.train.eval_every=2", "--config.train.checkpoint_every=2")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "process 0/1" in r.stdout  # banner
  assert sorted(os.listdir(os.path.join(wd, "checkpoints")), key=str) == ["2", "4"]
  assert glob.glob(os.path.join(wd, "tensorboard", "events.out.tfevents.*"))
  config = json.load(open(os.path.join(wd, "config.json")))
  assert config["train"]["num_steps"] == 4   # the resolved config, overrides included
  records = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  evals = [r for r in records if r["split"] == "eval"]
  assert [e["step"] for e in evals] == [2, 4]
  assert all(0.0 <= e["accuracy"] <= 1.0 and e["loss"] > 0 and e["num_targets"] > 0 for e in evals)
  assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]
  # The console's eval line puts the no-context baseline (Documents.unigram_baseline) beside accuracy and loss.
  import re
  from data.sources import Documents, vocab_from_config
  from tests.helpers import tiny_config
  line = [x for x in r.stdout.splitlines() if x.startswith("eval @ 4: ")][0]
  base = Documents(tiny_config().data, vocab_from_config(tiny_config().data)).unigram_baseline()
  assert re.match(rf"eval @ 4: accuracy \S+ \(without context {base['accuracy']:.4f}\) \| loss \S+ "
                  rf"\(without context {base['loss']:.4f}\) \| num_targets", line), line

  # Eval mode restores the last checkpoint read-only and reproduces the training run's final evaluation.
  r = run_launch(wd, "--mode=eval")
  assert r.returncode == 0, r.stderr[-3000:]
  result = json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])
  assert result["step"] == 4
  assert abs(result["loss"] - evals[-1]["loss"]) < 1e-5

  # Decode mode fills every [MASK] of the text given on the command line.
  r = run_launch(wd, "--mode=decode", "--text=import [MASK][MASK]s")
  assert r.returncode == 0, r.stderr[-3000:]
  output = r.stdout.split("--- output:\n")[1].strip("\n")
  filled, *listing = output.split("\n  [MASK] ")
  assert "[MASK]" not in filled and filled.startswith("import ") and filled.endswith("s")
  # ... and lists each mask's top 5 candidates with their probabilities (as pipeline("fill-mask") does).
  assert [line.split(":")[0] for line in listing] == ["1", "2"]
  for line in listing:
    probs = [float(c.rsplit(" ", 1)[1]) for c in line.split(": ", 1)[1].split(" | ")]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.001
