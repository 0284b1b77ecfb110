"""Data sources a family can choose (the `DataSource` protocol of models/family.py), and the config -> corpus and
vocabulary resolution they share.

  Documents     language-model documents (the embedded corpus, a text directory or a seqio Task), packed rows
  LabelledTask  a labelled classification task, one example per padded row plus `labels`
  Synthetic     a generator of examples, deterministic in (seed, example index) and resumable
  language_source  a synthetic language (data/synthetic.py) as a Synthetic source of one sequence per row
A rollout family (GRPO) uses a Synthetic source of prompts and draws its samples inside the objective's loss with
the current parameters. Every source yields host-side batches of this process's rows; train iterators are
checkpointable (grain's get_state/set_state protocol), evaluation iterators restart identically for a seed.
"""
import dataclasses
import functools
import json
import os
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np

from data import mnns, tokenized
from data.corpus import Corpus, load_corpus
from data.pipeline import make_iterator, shard_plan
from data.vocab import (ByteVocabulary, CharVocabulary, SentencePieceVocabulary, SizingVocabulary, SymbolVocabulary,
                        Vocabulary, cached_sentencepiece)


def _seqio_interop():
  """data/seqio_interop.py, or one line naming the extra install (seqio pulls TensorFlow, so requirements.txt
  leaves it out)."""
  try:
    from data import seqio_interop
  except ModuleNotFoundError as e:
    raise ValueError(f"seqio tasks need seqio ({e.name} is not installed): pip install -r requirements-seqio.txt"
                     ) from None
  return seqio_interop


@functools.lru_cache(maxsize=4)
def _corpus(source: str, max_doc_chars: int, validation_percent: int, seqio_modules: tuple[str, ...],
            text_field: str = "text") -> Corpus:
  if source.startswith("seqio:"):
    return _seqio_interop().load_task_corpus(source[len("seqio:"):], seqio_modules)
  if source.startswith(tokenized.PREFIX):
    return tokenized.load(source[len(tokenized.PREFIX):])
  return load_corpus(source, max_doc_chars, validation_percent, text_field)


def corpus_from_config(data_cfg: Any) -> Corpus:
  """`data.corpus` with `data.max_doc_chars`, `data.validation_percent` and `data.text_field` (loaded once per
  process; a tokenized:DIR corpus is opened, never read into memory)."""
  return _corpus(data_cfg.corpus, data_cfg.max_doc_chars, data_cfg.validation_percent,
                 tuple(data_cfg.seqio_modules), data_cfg.get("text_field", "text"))


def vocab_from_config(data_cfg: Any) -> Vocabulary:
  """`data.vocab`: "byte", "char" (the corpus's most frequent characters, data.vocab_size ids), "mnns" (with
  data.corpus=mnns: data/mnns.py's fixed layout), "symbols"
  (data.vocab_size abstract symbols, for data.corpus=synthetic:<name>), "spm" (trained on the corpus, cached), a
  SentencePiece .model file, "hf:<dir or tokenizer.json>" (a Hugging Face tokenizer, data/hf_tokenizer.py) or
  "seqio:<task>"."""
  kind = data_cfg.vocab
  if data_cfg.corpus.split(":")[0] == "mnns" or kind == "mnns":
    if data_cfg.corpus.split(":")[0] != "mnns" or kind != "mnns":
      raise ValueError(f"data.corpus={data_cfg.corpus!r} with data.vocab={kind!r}: the MNNS task (data/mnns.py) and "
                       "only it uses data.vocab='mnns'; set both or neither")
    return mnns.parse(data_cfg.corpus).vocab
  synthetic = data_cfg.corpus.startswith("synthetic:")
  if synthetic != (kind == "symbols"):
    raise ValueError(f"data.corpus={data_cfg.corpus!r} with data.vocab={kind!r}: synthetic languages and only they "
                     "use data.vocab='symbols' (data.vocab_size symbols); set both or neither")
  if kind == "symbols":
    return SymbolVocabulary(data_cfg.vocab_size)
  if data_cfg.corpus.startswith(tokenized.PREFIX) and kind in ("char", "spm"):
    spec = tokenized.read_index(data_cfg.corpus[len(tokenized.PREFIX):])["vocab"]["spec"]
    raise ValueError(f"data.vocab={kind!r} is trained on text, but data.corpus={data_cfg.corpus!r} holds token ids; "
                     f"set --config.data.vocab={spec} (the vocabulary it was prepared with)")
  if kind == "char":
    return _char_vocabulary(data_cfg.corpus, data_cfg.max_doc_chars, data_cfg.validation_percent,
                            tuple(data_cfg.seqio_modules), data_cfg.vocab_size)
  if kind.startswith("seqio:"):
    return _seqio_interop().task_vocabulary(kind[len("seqio:"):], tuple(data_cfg.seqio_modules))
  if kind == "byte":
    return ByteVocabulary()
  if kind == "spm":
    corpus = corpus_from_config(data_cfg)
    return cached_sentencepiece(corpus.train, data_cfg.vocab_size, corpus.fingerprint, cache=data_cfg.cache_dir)
  if kind.endswith(".model"):
    return SentencePieceVocabulary(kind)
  if kind.startswith("hf:"):
    from data import hf_tokenizer
    return hf_tokenizer.load(kind[len("hf:"):])
  raise ValueError(f"data.vocab={kind!r}: use 'byte', 'char', 'symbols', 'spm', a path to a SentencePiece .model "
                   "file, 'hf:<dir or tokenizer.json>' or 'seqio:<task>'")


@functools.lru_cache(maxsize=4)
def _char_vocabulary(source, max_doc_chars, validation_percent, seqio_modules, size) -> CharVocabulary:
  return CharVocabulary.from_texts(_corpus(source, max_doc_chars, validation_percent, seqio_modules).train, size)


@dataclasses.dataclass(frozen=True)
class Documents:
  """Packed language-model rows {tokens, segment_ids, positions} [B, seq_len] from `data.corpus`, read when the
  source is built (so a missing corpus is reported before anything compiles) and once per process."""
  data_cfg: Any
  vocab: Vocabulary

  def __post_init__(self):
    corpus_from_config(self.data_cfg)
    if self.data_cfg.corpus.startswith(tokenized.PREFIX):
      tokenized.check_vocab(self.data_cfg.corpus[len(tokenized.PREFIX):], self.vocab)

  def _iterator(self, docs, global_batch: int, seed: int):
    d = self.data_cfg
    return make_iterator(docs, self.vocab, seq_len=d.seq_len, global_batch=global_batch, seed=seed,
                         num_shards=d.num_shards, packing=d.packing)

  def train_iterator(self, *, global_batch: int, seed: int):
    return self._iterator(corpus_from_config(self.data_cfg).train, global_batch, seed)

  def eval_iterator(self, *, global_batch: int, seed: int):
    return self._iterator(corpus_from_config(self.data_cfg).validation, global_batch, seed)

  def unigram_baseline(self, max_docs: int = 2000) -> dict[str, float]:
    """What a token predictor without context scores on the validation split: `accuracy` of always answering the
    training split's most frequent token, `loss` (nats) of the training split's unigram law (add-one smoothed);
    special ids excluded. From the first `max_docs` documents of each split."""
    corpus = corpus_from_config(self.data_cfg)
    special = np.asarray(sorted(set(self.vocab.special_ids)))

    def counts(docs) -> np.ndarray:
      docs = [docs[i] for i in range(min(len(docs), max_docs))]
      rows = self.vocab.encode_batch(docs) if docs and isinstance(docs[0], str) else docs   # text, or token ids
      ids = np.concatenate([np.asarray(r, np.int64).ravel() for r in rows] + [np.zeros(0, np.int64)])
      c = np.bincount(ids, minlength=self.vocab.size)[:self.vocab.size].astype(np.float64)
      c[special[special < self.vocab.size]] = 0
      return c
    normal = np.ones(self.vocab.size)
    normal[special[special < self.vocab.size]] = 0
    return no_context_scores(counts(corpus.train), counts(corpus.validation), normal)


def no_context_scores(train_counts: np.ndarray, val_counts: np.ndarray, allowed: np.ndarray) -> dict[str, float]:
  """What predicting without context scores on validation targets with counts `val_counts`: `accuracy` of always
  answering the training split's most frequent target, `loss` (nats) of the training split's law, add-one
  smoothed over the `allowed` ids (a 0/1 mask)."""
  p = (train_counts + allowed) / (train_counts + allowed).sum()
  seen = val_counts > 0
  return {"accuracy": float(val_counts[np.argmax(train_counts)] / val_counts.sum()),
          "loss": float(-(val_counts[seen] * np.log(p[seen])).sum() / val_counts.sum())}


@dataclasses.dataclass(frozen=True)
class LabelledTask:
  """One example per right-padded row {tokens, segment_ids, positions} [B, seq_len] + labels [B].

  `task` builds the task (a data.tasks.ClassificationTask) when first needed.
  """
  task: Callable[[], Any]
  vocab: Vocabulary
  seq_len: int
  num_shards: int = 0

  def _iterator(self, split: str, global_batch: int, seed: int):
    from data.tasks import make_classification_iterator
    return make_classification_iterator(getattr(self.task(), split), self.vocab, seq_len=self.seq_len,
                                        global_batch=global_batch, seed=seed, num_shards=self.num_shards,
                                        process_index=jax.process_index(), process_count=jax.process_count())

  def train_iterator(self, *, global_batch: int, seed: int):
    return self._iterator("train", global_batch, seed)

  def eval_iterator(self, *, global_batch: int, seed: int):
    return self._iterator("validation", global_batch, seed)

  def label_prior_baseline(self) -> dict[str, float]:
    """What a classifier without input scores on the validation split (`no_context_scores` of the label counts;
    ClassificationTask.majority_baseline is the validation split's own majority rate, an upper bound of it)."""
    task = self.task()
    n = len(task.class_names)
    counts = lambda split: np.bincount([y for _, y in split], minlength=n).astype(np.float64)   # noqa: E731
    return no_context_scores(counts(task.train), counts(task.validation), np.ones(n))


class SyntheticIterator:
  """Rows i = start, start+1, ... of this process, `example(seed, i)` each; state = the step (one record, the same
  for every process count, stored by process 0)."""

  def __init__(self, example: Callable[[int, int], dict[str, np.ndarray]], seed: int, global_batch: int,
               num_shards: int):
    plan = shard_plan(global_batch, num_shards, jax.process_index(), jax.process_count())
    self._example, self._seed, self._global_batch = example, seed, global_batch
    self._first, self._rows = plan.first_row, plan.num_rows
    self._step = 0

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    base = self._step * self._global_batch + self._first
    self._step += 1
    rows = [self._example(self._seed, base + r) for r in range(self._rows)]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

  def get_state(self) -> bytes:
    return json.dumps({"step": self._step}).encode()

  def set_state(self, state: bytes) -> None:
    self._step = int(json.loads(state)["step"])

  def portable_state(self) -> dict[str, Any]:
    return {"rows": {"step": self._step}} if jax.process_index() == 0 else {}

  def set_portable_state(self, read: Callable[[str], Any]) -> None:
    self._step = int(read("rows")["step"])

  def start_prefetch(self) -> None:  # grain's checkpoint handler calls it after a restore
    pass


@dataclasses.dataclass(frozen=True)
class Synthetic:
  """Examples from `example(seed, index) -> {name: array}`, a pure function: the batch at step s is the same for
  any process count, and resuming is restoring the step counter. Evaluation draws from `eval_seed_offset + seed`."""
  example: Callable[[int, int], dict[str, np.ndarray]]
  num_shards: int = 0
  eval_seed_offset: int = 1_000_003
  eval_example: Callable[[int, int], dict[str, np.ndarray]] | None = None   # default: `example`

  def train_iterator(self, *, global_batch: int, seed: int) -> SyntheticIterator:
    return SyntheticIterator(self.example, seed, global_batch, self.num_shards)

  def eval_iterator(self, *, global_batch: int, seed: int) -> SyntheticIterator:
    return SyntheticIterator(self.eval_example or self.example, seed + self.eval_seed_offset, global_batch,
                             self.num_shards)


def language_source(data_cfg: Any) -> Synthetic:
  """`data.corpus=synthetic:<name>[:options]` over data.vocab_size symbols, rows of data.seq_len symbols; the
  evaluation split samples with a different seed (and, for `symbolic`, held-out symbols)."""
  from data import synthetic
  language = synthetic.parse(data_cfg.corpus, data_cfg.vocab_size)
  return Synthetic(synthetic.language_rows(language, data_cfg.seq_len, "train"), data_cfg.num_shards,
                   eval_example=synthetic.language_rows(language, data_cfg.seq_len, "eval"))


def pad_rows(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded int32 rows [B, width] (each cut to width) and their real-token mask (int32, 1 = real)."""
  tokens = np.full((len(rows), width), pad_id, np.int32)
  real = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    r = list(r)[:width]
    tokens[i, :len(r)], real[i, :len(r)] = r, 1
  return tokens, real


def framed_rows(vocab: Vocabulary, texts: Sequence[str], seq_len: int, *, masks: bool = True
                ) -> list[list[int]]:
  """[CLS] text [SEP] per text; with `masks`, each "[MASK]" in a text is one mask token. A text longer than
  seq_len is refused (ValueError), never silently cut."""
  encode = vocab.encode_with_masks if masks else vocab.encode
  rows = [[vocab.cls_id] + encode(t) + [vocab.sep_id] for t in texts]
  for t, r in zip(texts, rows):
    if len(r) > seq_len:
      raise ValueError(f"text {t[:40]!r}... is {len(r)} tokens with [CLS]/[SEP], more than data.seq_len={seq_len}; "
                       "shorten it or raise data.seq_len")
  return rows


@functools.cache
def _trajectory_arrays(path: str, seq_len: int) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"trajectory file {path!r} not found: write it with the base MDLM's --mode=decode "
                            "--config.decode.trajectories=N --config.decode.trajectory_file=PATH")
  with np.load(path) as f:
    missing = {"tokens", "order", "segment_ids"} - set(f.files)
    if missing:
      raise ValueError(f"{path} is not a trajectory file: it lacks {sorted(missing)}")
    arrays = {k: np.asarray(f[k], np.int32) for k in ("tokens", "order", "segment_ids")}
  if arrays["tokens"].shape[1] != seq_len:
    raise ValueError(f"trajectory file {path} holds rows of {arrays['tokens'].shape[1]} tokens but "
                     f"data.seq_len={seq_len}; set --config.data.seq_len={arrays['tokens'].shape[1]}")
  return arrays


@dataclasses.dataclass(frozen=True)
class Trajectories:
  """Rows of a trajectory file (decode/trajectories.py writes it: tokens, order, segment_ids [N, T] int32), read
  when the first iterator is made. Row i of a stream is row perm_e[i mod n] of its split (a fresh permutation per
  epoch e, from the seed), so batches do not depend on the process count and resuming restores a counter
  (SyntheticIterator). The last `validation_percent` of the rows (at least one) are the evaluation split."""
  path: str
  seq_len: int
  validation_percent: int = 5
  num_shards: int = 0

  def _rows(self, split: str) -> range:
    n = self._arrays()["tokens"].shape[0]
    n_val = max(1, n * self.validation_percent // 100)
    if n - n_val < 1:
      raise ValueError(f"trajectory file {self.path} holds {n} rows: too few for a training and a validation split")
    return range(n - n_val) if split == "train" else range(n - n_val, n)

  def _arrays(self) -> dict[str, np.ndarray]:
    return _trajectory_arrays(self.path, self.seq_len)

  def _example(self, rows: range) -> Callable[[int, int], dict[str, np.ndarray]]:
    arrays = self._arrays()
    positions = np.arange(self.seq_len, dtype=np.int32)

    def example(seed: int, index: int) -> dict[str, np.ndarray]:
      epoch, j = divmod(index, len(rows))
      r = rows[int(np.random.default_rng([seed, epoch]).permutation(len(rows))[j])]
      return {"tokens": arrays["tokens"][r], "order": arrays["order"][r], "segment_ids": arrays["segment_ids"][r],
              "positions": positions}
    return example

  def train_iterator(self, *, global_batch: int, seed: int) -> SyntheticIterator:
    return SyntheticIterator(self._example(self._rows("train")), seed, global_batch, self.num_shards)

  def eval_iterator(self, *, global_batch: int, seed: int) -> SyntheticIterator:
    return SyntheticIterator(self._example(self._rows("eval")), seed, global_batch, self.num_shards)


class MnnsSource:
  """The family's DataSource: training rows are epochs of the training split, each in its own order
  (numpy permutation of fold(seed, epoch)), drawn as a stream so the row at global index i is a pure function of
  (seed, i) and resuming restores a step counter (data/sources.py SyntheticIterator). Evaluation walks the
  validation split once in order and pads the last batches with valid = 0 rows; evaluation must cover it
  (eval.batch_size x eval.num_batches >= its size, checked by the family)."""

  def __init__(self, train: "mnns.MnnsRows", val: "mnns.MnnsRows", num_shards: int = 0):
    self.train, self.val, self.num_shards = train, val, num_shards

  def _train_example(self, seed: int, index: int) -> dict[str, np.ndarray]:
    n = len(self.train)
    epoch, pos = divmod(index, n)
    perm = mnns.permutation(seed, epoch, n)
    return self.train.row(int(perm[pos]))

  def _eval_example(self, seed: int, index: int) -> dict[str, np.ndarray]:
    del seed
    if index < len(self.val):
      return self.val.row(index)
    r = self.val.row(0)
    return {**r, "valid": np.zeros_like(r["valid"])}

  def train_iterator(self, *, global_batch: int, seed: int):
    return SyntheticIterator(self._train_example, seed, global_batch, self.num_shards)

  def eval_iterator(self, *, global_batch: int, seed: int):
    return SyntheticIterator(self._eval_example, seed, global_batch, self.num_shards)


def sizing_vocabulary(data_cfg: Any) -> Vocabulary:
  """The vocabulary for sizing a model without training it (launch.py --mode=compile_only): a SentencePiece
  vocabulary to be trained on the corpus (data.vocab="spm") becomes a stand-in of data.vocab_size ids (the model
  reads only the size; training one is slow and may fail on a small corpus); any other is loaded as usual."""
  if data_cfg.vocab == "spm":
    return SizingVocabulary(data_cfg.vocab_size)
  return vocab_from_config(data_cfg)
