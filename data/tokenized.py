"""Pre-tokenized corpora (`data.corpus=tokenized:DIR`, written by `python -m data.prepare`): ArrayRecord shards of
token arrays, one record per document, read by random access through grain's ArrayRecordDataSource.

Nothing is read into memory up front: a split is a `Sequence` of documents whose `__getitem__` reads one record,
so grain's MapDataset slices, shuffles (an index permutation) and repeats it lazily, and resident memory does not
grow with the corpus (bench/data_pipeline.py measures it). The index (index.json) records the vocabulary's
fingerprint; a run whose data.vocab differs is refused before anything compiles.

Layout of DIR: index.json, prepare.json (the settings, for restarts), shards/<split>-<unit>.array_record and
done/<unit>.json (one per finished work unit).
"""
import functools
import json
import pathlib
from typing import Sequence

import numpy as np

FORMAT = "lmkit.tokenized/1"
PREFIX = "tokenized:"


class TokenShards(Sequence):
  """One split's documents as int32 token arrays (ids in the vocabulary's layout, without CLS/SEP framing)."""

  def __init__(self, root: pathlib.Path, shards: Sequence[str], dtype: str, documents: int, max_doc_tokens: int):
    self._root, self._shards, self._dtype = root, list(shards), np.dtype(dtype)
    self.max_doc_tokens, self._n = max_doc_tokens, documents
    self._source = None

  def _src(self):
    if self._source is None:   # opened on first read (and again in a worker process after pickling)
      import grain
      self._source = grain.sources.ArrayRecordDataSource([str(self._root / "shards" / s) for s in self._shards])
      if len(self._source) != self._n:
        raise ValueError(f"{self._root}: the shards hold {len(self._source)} documents but index.json says "
                         f"{self._n}; re-run python -m data.prepare into a fresh --output")
    return self._source

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(self._n))]
    return np.frombuffer(self._src()[int(i)], self._dtype).astype(np.int32)

  def __getstate__(self):
    return {**self.__dict__, "_source": None}


def read_index(directory: str | pathlib.Path) -> dict:
  root = pathlib.Path(directory)
  f = root / "index.json"
  if not f.is_file():
    raise FileNotFoundError(f"data.corpus=tokenized:{directory}: no index.json there; write it with python -m "
                            f"data.prepare --output={directory} (a prepare run that did not finish leaves none)")
  index = json.loads(f.read_text())
  if index.get("format") != FORMAT:
    raise ValueError(f"{f}: format {index.get('format')!r}, expected {FORMAT!r}; re-run python -m data.prepare")
  return index


@functools.lru_cache(maxsize=4)
def load(directory: str):
  """-> data.corpus.Corpus whose splits are TokenShards (its fingerprint: the vocabulary's, from the index)."""
  from data.corpus import Corpus
  root = pathlib.Path(directory)
  index = read_index(root)
  splits = {}
  for name in ("train", "validation"):
    s = index["splits"][name]
    if not s["documents"]:
      raise ValueError(f"data.corpus=tokenized:{directory} has no {name} documents; prepare it with more input or "
                       "another --validation_percent")
    splits[name] = TokenShards(root, s["shards"], index["dtype"], s["documents"], s["max_doc_tokens"])
  return Corpus(splits["train"], splits["validation"], index["vocab"]["fingerprint"])


def check_vocab(directory: str, vocab) -> None:
  """One line when the shards were tokenized with another vocabulary than the run's."""
  index = read_index(directory)
  want = index["vocab"]
  if vocab.fingerprint != want["fingerprint"]:
    raise ValueError(f"data.corpus=tokenized:{directory} was tokenized with {want['spec']!r} (fingerprint "
                     f"{want['fingerprint']}, {want['size']} ids) but this run's vocabulary is {vocab.fingerprint} "
                     f"({vocab.size} ids); set --config.data.vocab={want['spec']} or prepare the data again")
