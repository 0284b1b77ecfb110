"""Bad input stops before compilation with one line that names the problem and the fix."""
import jax
import pytest

from tests.helpers import run_launch, tiny_config
from train.errors import ConfigError
from train.loop import train


def test_unknown_config_key_is_one_line_naming_the_key(tmp_path):
  r = run_launch(str(tmp_path), "--config.optim.lrr=0.1")
  assert r.returncode == 2
  assert "Traceback" not in r.stderr
  [line] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert "unknown config key --config.optim.lrr" in line and 'Did you mean "lr"' in line
  assert not (tmp_path / "checkpoints").exists()


def test_launch_reports_config_errors_as_one_line(tmp_path):
  r = run_launch(str(tmp_path), "--config.mesh.data=3")
  assert r.returncode == 2
  assert "Traceback" not in r.stderr
  [line] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert "mesh" in line and "--config.mesh" in line


@pytest.mark.parametrize("overrides, message", [
    ({"mesh.data": 3}, r"does not divide the 8 devices; set --config.mesh"),
    ({"mesh.data": 2, "mesh.fsdp": 2}, r"uses 4 devices but 8 are available"),
    ({"train.batch_size": 12}, r"train.batch_size=12 .* data-parallel size mesh.data\*mesh.fsdp=8; set "
                               r"--config.train.batch_size to a multiple of 8"),
    ({"train.batch_size": 8, "train.grad_accum_steps": 2}, r"a multiple of 16"),
    ({"data.corpus": "/nonexistent/corpus.txt"}, r"corpus '/nonexistent/corpus.txt' \(config key data.corpus\) "
                                                 r"does not exist"),
    ({"data.vocab": "/nonexistent/spm.model"}, r"SentencePiece model /nonexistent/spm.model does not exist"),
    ({"model.vocab_size": 100}, r"model.vocab_size=100 is smaller than the vocabulary \(260 ids\)"),
])
def test_bad_config_is_refused_before_compiling(overrides, message, tmp_path):
  """Through the real entry point: the error comes before any compilation and before any checkpoint."""
  events = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, *a, **k: events.append(event) if "backend_compile" in event else None)
  with pytest.raises(ConfigError, match=message):
    try:
      train(tiny_config(**overrides), str(tmp_path))
    finally:
      events.append("raised")
  assert events == ["raised"], events          # nothing was compiled before the error
  assert not (tmp_path / "checkpoints").exists()
