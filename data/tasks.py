"""Labelled tasks built from the embedded corpus, for fine-tuning.

stdlib_packages: which standard-library package (top-level module or package directory, e.g. "email",
"asyncio", "json") a paragraph of source code comes from, over the `num_classes` packages with the most
paragraphs. Train/validation split by file hash, as for the corpus, so no file contributes to both.
"""
import dataclasses

import grain
import numpy as np

from data.corpus import _is_validation, split_paragraphs, stdlib_files, stdlib_root
from data.pipeline import ShardedBatchIterator, shard_plan
from data.vocab import Vocabulary


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
  train: list[tuple[str, int]]
  validation: list[tuple[str, int]]
  class_names: tuple[str, ...]

  @property
  def majority_baseline(self) -> float:
    counts = np.bincount([label for _, label in self.validation], minlength=len(self.class_names))
    return float(counts.max() / max(counts.sum(), 1))


def stdlib_packages(num_classes: int = 8, max_chars: int = 1024, min_chars: int = 64,
                    validation_percent: int = 5) -> ClassificationTask:
  root = stdlib_root()
  by_package: dict[str, list[tuple[str, bool]]] = {}
  for path in stdlib_files():
    rel = path.relative_to(root)
    package = rel.parts[0].removesuffix(".py")
    val = _is_validation(str(rel), validation_percent)
    for para in split_paragraphs(path.read_text(encoding="utf-8", errors="replace"), max_chars):
      if len(para) >= min_chars:
        by_package.setdefault(package, []).append((para, val))
  names = tuple(sorted(sorted(by_package, key=lambda p: -len(by_package[p]))[:num_classes]))
  train, validation = [], []
  for label, name in enumerate(names):
    for para, val in by_package[name]:
      (validation if val else train).append((para, label))
  return ClassificationTask(train, validation, names)


class _Encode(grain.transforms.Map):
  def __init__(self, vocab: Vocabulary, seq_len: int):
    self._vocab, self._seq_len = vocab, seq_len

  def map(self, example):
    text, label = example
    ids = ([self._vocab.cls_id] + self._vocab.encode(text))[:self._seq_len - 1] + [self._vocab.sep_id]
    tokens = np.zeros(self._seq_len, np.int32)
    tokens[:len(ids)] = ids
    segment_ids = (np.arange(self._seq_len) < len(ids)).astype(np.int32)
    return {"tokens": tokens, "segment_ids": segment_ids, "positions": np.arange(self._seq_len, dtype=np.int32),
            "labels": np.int32(label)}


def classification_dataset(examples, vocab: Vocabulary, *, seq_len: int, batch_size: int, seed: int,
                           shard_index: int = 0, num_shards: int = 1) -> grain.IterDataset:
  """Shuffled (per epoch), repeated batches {tokens, segment_ids, positions: [b, T], labels: [b]}; one example per
  row, truncated to seq_len and right-padded."""
  ds = grain.MapDataset.source(examples)[shard_index::num_shards].shuffle(seed=seed).repeat()
  return ds.map(_Encode(vocab, seq_len)).to_iter_dataset().batch(batch_size, drop_remainder=True)




def make_classification_iterator(examples, vocab: Vocabulary, *, seq_len: int, global_batch: int, seed: int,
                                 num_shards: int = 0, process_index: int = 0,
                                 process_count: int = 1) -> ShardedBatchIterator:
  plan = shard_plan(global_batch, num_shards, process_index, process_count)
  return ShardedBatchIterator([classification_dataset(examples, vocab, seq_len=seq_len, batch_size=plan.rows_per_shard,
                                                      seed=seed + s, shard_index=s, num_shards=plan.num_shards)
                               for s in plan.shards], plan)
