"""seqio interop: a seqio Task can feed the grain pipeline, and a seqio vocabulary can be used by the models.

This is the only module that imports seqio (and with it TensorFlow); the default path never loads it.

- `SeqioVocabulary` maps any seqio vocabulary onto the shared special-id layout of data/vocab.py
  (PAD 0, CLS 1, SEP 2, MASK 3, UNK 4, then the seqio vocabulary's normal ids shifted by 2).
- `register_corpus_task` registers a seqio Task over one of our corpora (e.g. the standard library).
- `load_task_corpus` materialises a Task's tokenized "targets" (no shuffling, no packing: grain does both) as a
  Corpus of id arrays in our layout, which `data.pipeline` packs like text documents.
Config: data.corpus="seqio:<task>", data.vocab="seqio:<task>", data.seqio_modules=("my.tasks",) to register tasks.
"""
import hashlib
import importlib
import os
from typing import Sequence

import numpy as np

from data.corpus import Corpus, load_corpus
from data.vocab import MASK, PAD, SEP, Vocabulary

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import seqio  # noqa: E402
import tensorflow as tf  # noqa: E402

_SHIFT = 2   # seqio: pad 0, eos 1, unk 2, normal ids >= 3  ->  ours: 0, 2, 4, normal ids >= 5


class SeqioVocabulary(Vocabulary):
  def __init__(self, vocab: "seqio.Vocabulary"):
    self.seqio_vocab = vocab
    self._unk = vocab.unk_id if vocab.unk_id is not None else 2

  @property
  def size(self) -> int:
    return self.seqio_vocab.vocab_size + _SHIFT

  @property
  def first_normal_id(self) -> int:
    return 5

  def from_seqio(self, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, np.int32)
    out = ids + _SHIFT
    out = np.where(ids == self.seqio_vocab.pad_id, PAD, out)
    out = np.where(ids == self.seqio_vocab.eos_id, SEP, out)
    return np.where(ids == self._unk, 4, out).astype(np.int32)

  def to_seqio(self, ids: Sequence[int]) -> list[int]:
    return [i - _SHIFT if i >= self.first_normal_id else self._unk for i in ids if i == 4 or i >= 5]

  def encode(self, text: str) -> list[int]:
    return self.from_seqio(np.asarray(self.seqio_vocab.encode(text), np.int32)).tolist()

  def decode(self, ids: Sequence[int]) -> str:
    out, run = [], []
    for i in ids:
      i = int(i)
      if i == MASK:
        out.append(self.seqio_vocab.decode(self.to_seqio(run))); run = []; out.append("[MASK]")
      elif i >= 4:
        run.append(i)
    out.append(self.seqio_vocab.decode(self.to_seqio(run)))
    return "".join(out)


def register_corpus_task(name: str, vocab: "seqio.Vocabulary", source: str = "stdlib", max_chars: int = 2048,
                         validation_percent: int = 5) -> "seqio.Task":
  """A seqio Task whose examples are our corpus documents as {"targets": text}, tokenized by `vocab`."""
  corpus = load_corpus(source, max_chars, validation_percent)

  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del shuffle_files, seed
    docs = corpus.train if split == "train" else corpus.validation
    return tf.data.Dataset.from_tensor_slices({"targets": list(docs)})

  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name, source=seqio.FunctionDataSource(dataset_fn, splits=["train", "validation"]),
      preprocessors=[seqio.preprocessors.tokenize],
      output_features={"targets": seqio.Feature(vocab, add_eos=False)})


def _task(name: str, modules: Sequence[str] = ()) -> "seqio.Task":
  for m in modules:
    try:
      importlib.import_module(m)
    except ImportError as e:
      raise FileNotFoundError(f"data.seqio_modules: cannot import {m!r} ({e}); install it or fix the name") from None
  if name not in seqio.TaskRegistry.names():
    raise FileNotFoundError(f"seqio task {name!r} (data.corpus/data.vocab 'seqio:{name}') is not registered; add "
                            "the module that registers it to data.seqio_modules")
  return seqio.get_mixture_or_task(name)


def task_vocabulary(name: str, modules: Sequence[str] = ()) -> SeqioVocabulary:
  return SeqioVocabulary(_task(name, modules).output_features["targets"].vocabulary)


def load_task_corpus(name: str, modules: Sequence[str] = ()) -> Corpus:
  """The Task's train and validation splits as id arrays in our layout (without CLS/SEP: the pipeline adds them)."""
  task = _task(name, modules)
  vocab = SeqioVocabulary(task.output_features["targets"].vocabulary)
  splits = {}
  for split in ("train", "validation"):
    if split not in task.splits:
      raise FileNotFoundError(f"seqio task {name!r} has no {split!r} split (it has {list(task.splits)}); "
                              "data.corpus='seqio:<task>' needs train and validation")
    ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, use_cached=False)
    splits[split] = [vocab.from_seqio(ex["targets"]) for ex in ds.as_numpy_iterator()]
  digest = hashlib.sha256(name.encode())
  for doc in splits["train"][:1000]:
    digest.update(doc.tobytes())
  return Corpus(splits["train"], splits["validation"], digest.hexdigest()[:16])


__all__ = ["SeqioVocabulary", "register_corpus_task", "task_vocabulary", "load_task_corpus"]
