"""Bad input is one line naming the problem and the fix, before anything expensive runs, through launch.py, with
the README's default job (no --config) and with an explicit --config."""
import os

import pytest

from tests.helpers import run_launch, tiny_config


def _launch(workdir, *args, explicit=True):
  config = "configs/test_tiny.py" if explicit and not any(a.startswith("--config=") for a in args) else None
  return run_launch(workdir, *args, config=config, timeout=120)


def _one_line(r) -> str:
  assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
  assert "Traceback" not in r.stderr, r.stderr[-2000:]
  [line] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  return line


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("inputs")
  (d / "empty.txt").write_text("")
  (d / "binary.txt").write_bytes(bytes(range(256)) * 8)
  (d / "a_file").write_text("x")
  return d


ROWS = [
    (lambda f: ["--config.optim.lrr=1"], 'unknown config key --config.optim.lrr: Did you mean "lr"'),
    (lambda f: [f"--config.data.corpus={f / 'empty.txt'}"], "non-empty paragraph(s): too little text"),
    (lambda f: [f"--config.data.corpus={f / 'binary.txt'}"], "is binary, not text"),
    (lambda f: ["--config.data.seq_len=0"], "data.seq_len=0 must be an integer >= 1"),
    (lambda f: ["--config.train.num_steps=-1"], "train.num_steps=-1 must be an integer >= 1"),
    (lambda f: ["--config.train.batch_size=0"], "train.batch_size=0 must be an integer >= 1"),
    (lambda f: ["--config.train.grad_accum_steps=0"], "train.grad_accum_steps=0 must be an integer >= 1"),
    (lambda f: ["--config.model.dtype=float16"], "model.dtype='float16' is not one of ['float32', 'bfloat16']"),
    (lambda f: ["--config.optim.schedule=cosin"], "optim.schedule='cosin' is not one of"),
    (lambda f: ["--num_processes=2"], "a multi-process start needs --coordinator_address, --process_id as well"),
    (lambda f: [f"--workdir={f / 'a_file' / 'run'}"], "cannot be created"),
    (lambda f: ["--config.checkpoint.init_from=/nonexistent/run"], "holds no checkpoints/ directory"),
]


# Every row with an explicit --config; the README's default job (no --config) for the rows whose checks it reaches
# by another path (config parsing, the corpus, the distributed flags); the rest share the explicit rows' code.
CASES = [(row, True) for row in range(len(ROWS))] + [(row, False) for row in (0, 1, 9)]


@pytest.mark.parametrize("row, explicit", CASES,
                         ids=[f"{r}-{'explicit_config' if e else 'default_job'}" for r, e in CASES])
def test_bad_input_is_one_line(tmp_path, files, row, explicit):
  args, message = ROWS[row]
  line = _one_line(_launch(str(tmp_path / "run"), *args(files), explicit=explicit))
  assert message in line, line
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("args, message", [
    (["--config=configs/nonexistent.py"], "--config=configs/nonexistent.py: no such config file"),
    (["--config=configs/asarm.py:huge"], "unknown argument 'huge'; use 'tiny' or nothing"),
    (["--config=configs/asarm.py:tiny", "--config.decode.assd_k=1"], "decode.assd_k=1: ASSD drafts at least 2"),
    (["--config=configs/asarm.py:tiny", "--config.decode.temperature=0.0"], "need a positive temperature"),
    (["--config.model.global_attn_every_n_layers=0"], "model.global_attn_every_n_layers=0 must be a positive"),
])
def test_bad_config_file_or_family_value_is_one_line(tmp_path, args, message):
  line = _one_line(_launch(str(tmp_path / "run"), *args))
  assert message in line, line


def test_too_long_prompts_are_refused_before_training():
  from train.errors import ConfigError
  from train.experiment import build_experiment
  with pytest.raises(ConfigError, match=r"is 102 tokens with \[CLS\]/\[SEP\], more than data.seq_len=32"):
    build_experiment(tiny_config(**{"decode.prompts": ("x" * 100,)}))
  with pytest.raises(ConfigError, match=r"prompt 'import os' has no \[MASK\] to fill; mark each token to predict "
                                        r"with \[MASK\], e.g. --text='import \[MASK\]'$"):
    build_experiment(tiny_config(**{"decode.prompts": ("import os",)}))   # a masked LM would print it back
  from tests.helpers import tiny_causal_config
  c = tiny_causal_config()
  c.decode.prompts = ("y" * 30,)
  with pytest.raises(ConfigError, match=r"needs 39 positions with decode.max_new_tokens=8, more than "
                                        r"model.max_position_embeddings=32"):
    build_experiment(c)


def test_an_imported_directory_is_not_a_training_workdir(tmp_path):
  import numpy as np

  from train import checkpoint as ckpt_lib
  from train.errors import ConfigError
  from train.hf_convert import export_hf
  from train.modes import run
  from train.loop import train
  imported = str(tmp_path / "imported")
  ckpt = ckpt_lib.Checkpointer(os.path.join(imported, "checkpoints"), async_save=False)
  ckpt.save(0, {"params": {"w": np.zeros(2, np.float32)}}, None, {"model_vocab_size": 320, "source": ["x"]})
  ckpt.close()
  with pytest.raises(ConfigError, match="is a Hugging Face import"):
    train(tiny_config(), imported)
  for call in (lambda: run(tiny_config(), imported, "eval"), lambda: export_hf(imported, str(tmp_path / "out"))):
    with pytest.raises(ConfigError, match="has a checkpoint without a stored config; it was not written by launch"):
      call()


def test_seqio_task_without_seqio_installed_names_the_extra_install(monkeypatch):
  # requirements.txt leaves seqio (and TensorFlow) out; a seqio task then names requirements-seqio.txt.
  import sys
  from ml_collections import ConfigDict

  from data import sources
  monkeypatch.setitem(sys.modules, "seqio", None)   # "import seqio" now fails as when it is not installed
  monkeypatch.delitem(sys.modules, "data.seqio_interop", raising=False)
  import data
  monkeypatch.delattr(data, "seqio_interop", raising=False)   # `from data import x` reads the package attribute
  data_cfg = ConfigDict(dict(corpus="seqio:my_task", vocab="seqio:my_task", vocab_size=0, seqio_modules=(),
                             max_doc_chars=100, validation_percent=5, cache_dir=""))
  with pytest.raises(ValueError, match=r"^seqio tasks need seqio \(seqio is not installed\): pip install -r "
                                       r"requirements-seqio\.txt$"):
    sources.vocab_from_config(data_cfg)


@pytest.mark.parametrize("size, message", [
    (300, r"^data\.vocab_size=300 is below the \d+ distinct characters of the corpus \(plus special pieces\) that a "
          r"SentencePiece vocabulary must hold; set --config\.data\.vocab_size to at least \d+$"),
    (4096, r"^data\.vocab_size=4096 is more pieces than SentencePiece can find in this corpus \(at most \d+\); set "
           r"--config\.data\.vocab_size=\d+ or less, or train on more text$"),
])
def test_a_sentencepiece_size_the_corpus_cannot_give_is_one_line(tmp_path, size, message):
  # Seen: `launch.py --config=configs/modernbert_mlm.py:base` died with SentencePiece's "Vocabulary size too high".
  from data.vocab import train_sentencepiece
  lines = [f"line {i}: " + "".join(chr(0x4e00 + (i * 7 + j) % 400) for j in range(12)) for i in range(400)]
  with pytest.raises(ValueError, match=message):
    train_sentencepiece(lines, size, str(tmp_path / "spm"))
