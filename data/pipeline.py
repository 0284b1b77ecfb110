"""Grain pipelines: documents -> tokens -> packed rows (segment ids, positions) -> batches -> global arrays.

Determinism across process counts: the global batch is assembled from `num_shards` independent streams (shards),
each reading every num_shards-th document; shard s gives rows [s·r, (s+1)·r) of every global batch (r = batch /
num_shards). Process p holds rows [p·b, (p+1)·b) (b = batch / process_count) and reads the shards that overlap them,
so the global batch at step s is a pure function of (seed, num_shards, s) whatever the number of processes. When
processes outnumber shards, a shard is read by each process that needs some of its rows (each keeps its own rows;
the reading is repeated, the data is not). `data.num_shards=0` means one shard per process at the run's first
start (the scalable default on pods); the trainer keeps that count when it resumes on another process count.

Checkpoints store one data position per shard (`portable_state`), so a run restores on any process count that
divides its batch, with the same `num_shards`.
"""
import dataclasses
import json
from typing import Any, Callable, Iterator, Sequence

import grain
import jax
import numpy as np

from data.vocab import Vocabulary

PACKINGS = ("concat_split", "first_fit")


class _Tokenize(grain.transforms.Map):
  def __init__(self, vocab: Vocabulary):
    self._vocab = vocab

  def map(self, doc: str | np.ndarray) -> dict[str, np.ndarray]:
    """Text, or ids already in the vocabulary's layout (e.g. from a seqio Task), framed by CLS ... SEP."""
    ids = np.asarray(self._vocab.encode(doc) if isinstance(doc, str) else doc, np.int32)
    return {"tokens": np.concatenate([np.asarray([self._vocab.cls_id], np.int32), ids,
                                      np.asarray([self._vocab.sep_id], np.int32)])}


class _Chunk(grain.experimental.FlatMapTransform):
  """Cuts documents longer than a row into row-sized pieces (no text is dropped)."""

  def __init__(self, seq_len: int, max_fan_out: int):
    self._seq_len = seq_len
    self.max_fan_out = max_fan_out

  def flat_map(self, element):
    t = element["tokens"]
    pieces = [{"tokens": t[i:i + self._seq_len]} for i in range(0, len(t), self._seq_len)]
    if len(pieces) > self.max_fan_out:   # never silently drop text
      raise ValueError(f"a document of {len(t)} tokens needs {len(pieces)} rows of {self._seq_len}, more than "
                       f"max_fan_out={self.max_fan_out}")
    return pieces


def _rename(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {"tokens": batch["tokens"], "segment_ids": batch["tokens_segment_ids"],
          "positions": batch["tokens_positions"]}


def packed_dataset(docs: Sequence[str] | Sequence[np.ndarray], vocab: Vocabulary, *, seq_len: int, batch_size: int,
                   seed: int,
                   shard_index: int = 0, num_shards: int = 1, repeat: bool = True, packing: str = "concat_split",
                   max_fan_out: int = 0) -> grain.IterDataset:
  """One shard's stream of packed batches {tokens, segment_ids, positions}, each [batch_size, seq_len] int32.

  Segment ids count documents within a row from 1; 0 is padding. Positions count from 0 at each document's start.
  `packing`: "concat_split" concatenates documents and cuts rows (every slot is a real token; a document may
  continue in the next row, its positions continuing too); "first_fit" keeps documents whole (cut only when
  longer than a row) and pads what is left of a row.
  With `repeat`, the shard is reshuffled every epoch (train); without it, the stream ends (eval).
  `max_fan_out` (rows one document may need under first_fit; 0: enough for the longest document, counting at most
  4 tokens per character, which bounds every vocabulary here, byte fallback included).
  """
  ds = grain.MapDataset.source(docs)[shard_index::num_shards]
  if repeat:
    ds = ds.shuffle(seed=seed).repeat()
  it = ds.map(_Tokenize(vocab)).to_iter_dataset()
  if packing == "concat_split":
    it = grain.experimental.ConcatThenSplitIterDataset(it, length_struct={"tokens": seq_len})
  elif packing == "first_fit":
    if not max_fan_out:   # a random-access token corpus knows its longest document (never scan it)
      longest = (docs.max_doc_tokens + 2 if hasattr(docs, "max_doc_tokens") else
                 max((4 * len(d) if isinstance(d, str) else len(d)) + 2 for d in docs))
      max_fan_out = -(-longest // seq_len)
    it = grain.experimental.FlatMapIterDataset(it, _Chunk(seq_len, max_fan_out))
    it = grain.experimental.FirstFitPackIterDataset(it, length_struct={"tokens": seq_len},
                                                    num_packing_bins=max(2 * batch_size, 8), seed=seed)
  else:
    raise ValueError(f"data.packing={packing!r}: use 'concat_split' or 'first_fit'")
  return it.batch(batch_size, drop_remainder=True).map(_rename)


@dataclasses.dataclass(frozen=True)
class ShardPlan:
  """The rows of the global batch this process holds, [first_row, first_row + num_rows), and the shards it reads
  for them (each shard gives `rows_per_shard` consecutive rows)."""
  num_shards: int
  rows_per_shard: int
  first_row: int
  num_rows: int

  @property
  def shards(self) -> range:
    return range(self.first_row // self.rows_per_shard,
                 -(-(self.first_row + self.num_rows) // self.rows_per_shard))

  @property
  def offset(self) -> int:
    """Where this process's rows start within the concatenated rows of its shards."""
    return self.first_row - self.shards.start * self.rows_per_shard

  def writes(self, shard: int) -> bool:
    """Whether this process stores the shard's position in a checkpoint (the holder of its first row: one each)."""
    return self.first_row <= shard * self.rows_per_shard < self.first_row + self.num_rows


def shard_plan(global_batch: int, num_shards: int, process_index: int, process_count: int) -> ShardPlan:
  num_shards = num_shards or process_count
  if global_batch % num_shards:
    raise ValueError(f"train.batch_size={global_batch} must be divisible by data.num_shards={num_shards}")
  if global_batch % process_count:
    raise ValueError(f"train.batch_size={global_batch} must be divisible by the process count {process_count}")
  b = global_batch // process_count
  return ShardPlan(num_shards, global_batch // num_shards, process_index * b, b)


def shard_key(shard: int, num_shards: int) -> str:
  """The name of a shard's record in a checkpoint (the shard count in it: another count is another stream)."""
  return f"shard_{shard}-of-{num_shards}"


class ShardedBatchIterator:
  """This process's rows of the global batch, cut from the concatenated rows of the shards it reads.

  Checkpointing: `portable_state()` gives the records this process stores ({shard_key: grain iterator state} for
  the shards whose first row it holds) and `set_portable_state(read)` restores from records written by any
  process count (train/checkpoint.py). `get_state`/`set_state` (JSON bytes, grain's protocol for non-grain
  iterators) hold this process's shards only.
  """

  def __init__(self, datasets: Sequence[grain.IterDataset], plan: ShardPlan):
    if len(datasets) != len(plan.shards):
      raise ValueError(f"{len(datasets)} datasets for shards {list(plan.shards)}")
    self._plan = plan
    self._iters = {s: iter(ds) for s, ds in zip(plan.shards, datasets)}

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    parts = [next(it) for it in self._iters.values()]
    rows = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    o, n = self._plan.offset, self._plan.num_rows
    if o or len(next(iter(rows.values()))) != n:
      rows = {k: v[o:o + n] for k, v in rows.items()}
    return rows

  def portable_state(self) -> dict[str, Any]:
    return {shard_key(s, self._plan.num_shards): it.get_state() for s, it in self._iters.items()
            if self._plan.writes(s)}

  def set_portable_state(self, read: Callable[[str], Any]) -> None:
    for s, it in self._iters.items():
      it.set_state(read(shard_key(s, self._plan.num_shards)))

  def get_state(self) -> bytes:
    return json.dumps({shard_key(s, self._plan.num_shards): it.get_state() for s, it in self._iters.items()}).encode()

  def set_state(self, state: bytes) -> None:
    states = json.loads(state)
    if isinstance(states, list):   # written before shard keys (one list per process, in shard order)
      if len(states) != len(self._iters):
        raise ValueError(f"data iterator checkpoint has {len(states)} shards but this process reads "
                         f"{len(self._iters)}; keep data.num_shards and the process count of the saved run")
      states = {shard_key(s, self._plan.num_shards): v for s, v in zip(self._iters, states)}
    self.set_portable_state(lambda key: _record(states, key))

  def start_prefetch(self) -> None:  # called by grain's checkpoint handler after a restore
    pass


def _record(records: dict[str, Any], key: str) -> Any:
  if key not in records:
    raise ValueError(f"the data position has no record {key} (it holds {sorted(records)}); keep data.num_shards "
                     "of the saved run")
  return records[key]


def make_iterator(docs: Sequence[str], vocab: Vocabulary, *, seq_len: int, global_batch: int, seed: int,
                  num_shards: int = 0, repeat: bool = True, packing: str = "concat_split",
                  process_index: int | None = None,
                  process_count: int | None = None) -> ShardedBatchIterator:
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  plan = shard_plan(global_batch, num_shards, pi, pc)
  return ShardedBatchIterator([
      packed_dataset(docs, vocab, seq_len=seq_len, batch_size=plan.rows_per_shard, seed=seed + s, shard_index=s,
                     num_shards=plan.num_shards, repeat=repeat, packing=packing) for s in plan.shards], plan)


def to_global(batch: dict[str, np.ndarray], shardings: dict[str, jax.sharding.NamedSharding]) -> dict[str, jax.Array]:
  """Process-local rows -> one global jax.Array per key (the global batch is the rows of all processes)."""
  return {k: jax.make_array_from_process_local_data(shardings[k], v) for k, v in batch.items()}


