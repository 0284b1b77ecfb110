"""Config keys equal what the family reads, and enumerated values are checked once, before anything is built: each
mistake is one line through launch.py, naming the key, the family where it matters, and the fix."""
import pytest

from tests.helpers import run_launch


@pytest.mark.parametrize("config, override, message", [
    # An override of a key the chosen family does not read (today's silent no-ops).
    ("configs/asarm.py:tiny", "--config.model.attention_impl=xla",
     "model.name='asarm' does not read model.attention_impl; remove the override"),
    ("configs/causal_lm.py", "--config.objective.mask_rate=0.2",
     "model.name='causal_lm' does not read objective.mask_rate; remove the override"),
    # Each enumerated value.
    ("configs/test_tiny.py", "--config.model.dtype=float16",
     "model.dtype='float16' is not one of ['float32', 'bfloat16'] (model.name='modernbert_mlm')"),
    ("configs/test_tiny.py", "--config.optim.schedule=cosin",
     "optim.schedule='cosin' is not one of ['cosine', 'linear', 'constant']"),
    ("configs/test_tiny.py", "--config.data.packing=best_fit",
     "data.packing='best_fit' is not one of ['concat_split', 'first_fit']"),
    ("configs/test_tiny.py", "--config.model.attention_impl=flash",
     "model.attention_impl='flash' is not one of ['auto', 'chunked', 'einsum', 'xla', 'cudnn', 'splash']"),
    ("configs/test_tiny.py", "--config.model.hidden_activation=gelu_fast",
     "model.hidden_activation='gelu_fast' is not one of ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu', 'silu']"),
    ("configs/modernbert_finetune.py", "--config.model.pooling=max",
     "model.pooling='max' is not one of ['cls', 'mean'] (model.name='modernbert_classifier')"),
    ("configs/test_tiny.py", "--config.model.attention_impl=cudnn",
     "model.attention_impl='cudnn' needs 16-bit inputs; set --config.model.dtype=bfloat16"),
    ("configs/electra_finetune.py", "--config.model.electra_tower=both",
     "model.electra_tower='both' is not one of ['discriminator', 'generator'] (model.name='electra_classifier')"),
])
def test_bad_key_or_value_is_one_line(tmp_path, config, override, message):
  r = run_launch(str(tmp_path), override, config=config, timeout=120)
  assert r.returncode == 2, r.stderr[-2000:]
  assert "Traceback" not in r.stderr
  [line] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert message in line, line
  assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "config.json").exists()
