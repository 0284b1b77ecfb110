"""seqio interop: a seqio Task over our corpus feeds the grain pipeline; a seqio vocabulary drives the model."""
import os

import numpy as np
import pytest

from data.corpus import load_corpus
from data.pipeline import make_iterator
from data.vocab import CLS, MASK, SEP, ByteVocabulary
from tests.helpers import require, tiny_config

seqio = require("seqio")
from data import seqio_interop  # noqa: E402


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  import sysconfig
  d = tmp_path_factory.mktemp("corpus")
  stdlib = sysconfig.get_paths()["stdlib"]
  for name in ("textwrap.py", "bisect.py", "colorsys.py", "keyword.py", "heapq.py"):
    (d / (name + ".txt")).write_text(open(os.path.join(stdlib, name)).read())
  return str(d)


def test_seqio_vocabulary_maps_onto_the_shared_layout():
  v = seqio_interop.SeqioVocabulary(seqio.ByteVocabulary())
  assert v.size == seqio.ByteVocabulary().vocab_size + 2
  text = "def f():\n    return 'é'\n"
  ids = v.encode(text)
  assert min(ids) >= v.first_normal_id
  assert v.decode([CLS, *ids, SEP]) == text
  assert v.decode(v.encode_with_masks("a[MASK]b")) == "a[MASK]b" and MASK in v.encode_with_masks("[MASK]")


def test_seqio_task_feeds_the_grain_pipeline(corpus_dir):
  seqio_interop.register_corpus_task("lmkit_test_corpus", seqio.ByteVocabulary(), source=corpus_dir,
                                     max_chars=512, validation_percent=20)
  via_seqio = seqio_interop.load_task_corpus("lmkit_test_corpus")
  ours = load_corpus(corpus_dir, 512, 20)
  vocab = seqio_interop.task_vocabulary("lmkit_test_corpus")
  assert len(via_seqio.train) == len(ours.train) and len(via_seqio.validation) == len(ours.validation)
  kw = dict(seq_len=64, global_batch=4, seed=0, process_index=0, process_count=1)
  a = make_iterator(via_seqio.train, vocab, **kw)
  b = make_iterator(ours.train, ByteVocabulary(), **kw)
  for _ in range(5):
    x, y = next(a), next(b)
    # Same documents in the same order and packing: the decoded text and the segment layout agree.
    np.testing.assert_array_equal(x["segment_ids"], y["segment_ids"])
    assert [vocab.decode(r) for r in x["tokens"]] == [ByteVocabulary().decode(r) for r in y["tokens"]]


def test_training_on_a_seqio_task(corpus_dir, tmp_path):
  from train.loop import train
  seqio_interop.register_corpus_task("lmkit_test_corpus", seqio.ByteVocabulary(), source=corpus_dir,
                                     max_chars=512, validation_percent=20)
  config = tiny_config(**{"data.corpus": "seqio:lmkit_test_corpus", "data.vocab": "seqio:lmkit_test_corpus",
                          "train.num_steps": 3, "train.eval_every": 0, "mesh.data": 8})
  metrics = train(config, str(tmp_path))
  assert np.isfinite(metrics["loss"]) and metrics["num_targets"] > 0


def test_a_missing_seqio_module_or_task_is_one_line():
  with pytest.raises(FileNotFoundError, match=r"data.seqio_modules: cannot import 'no_such_module_xyz'"):
    seqio_interop.task_vocabulary("lmkit_missing_task", ("no_such_module_xyz",))
  with pytest.raises(FileNotFoundError, match=r"seqio task 'lmkit_missing_task' .* is not registered"):
    seqio_interop.task_vocabulary("lmkit_missing_task")
