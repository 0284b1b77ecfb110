"""Vocabularies: bytes, characters, abstract symbols (synthetic languages), and SentencePiece trained on the
corpus and cached (Hugging Face tokenizers: data/hf_tokenizer.py).

These vocabularies share one layout of special ids: 0 = [PAD], 1 = [CLS] (BOS), 2 = [SEP] (EOS), 3 = [MASK];
SentencePiece adds 4 = <unk>. Models and objectives read the roles from the vocabulary (`pad_id`, `cls_id`,
`sep_id`, `mask_id`, `special_ids`, `first_normal_id`), never these numbers, so a Hugging Face tokenizer keeps its
checkpoint's own ids.
"""
import abc
import collections
import hashlib
import os
import pathlib
import re
from typing import Iterable, Sequence

import numpy as np

PAD, CLS, SEP, MASK = 0, 1, 2, 3
MASK_TEXT = "[MASK]"


class Vocabulary(abc.ABC):
  pad_id, cls_id, sep_id, mask_id = PAD, CLS, SEP, MASK

  @property
  @abc.abstractmethod
  def size(self) -> int:
    """Number of ids (the model's embedding may be larger: it is rounded up)."""

  @property
  def special_ids(self) -> tuple[int, ...]:
    return tuple(range(self.first_normal_id))

  @property
  @abc.abstractmethod
  def first_normal_id(self) -> int:
    """Ids below this are special tokens."""

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Text -> ids, without special tokens."""

  @abc.abstractmethod
  def decode(self, ids: Sequence[int]) -> str:
    """Ids -> text; [MASK] renders as "[MASK]", other special ids are dropped."""

  @property
  def fingerprint(self) -> str:
    """Identifies the id mapping (pre-tokenized shards record it; data.corpus=tokenized:DIR checks it)."""
    return f"{type(self).__name__}:{self.size}"

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [self.encode(t) for t in texts]

  # Bytes the tokenizer puts before every text (SentencePiece's dummy-prefix space); see token_bytes.
  byte_prefix: bytes = b""

  def token_bytes(self) -> tuple[bytes | None, ...]:
    """The exact bytes each id stands for in the text's UTF-8 stream, `None` for a special id or one with no fixed
    bytes (unknown): joining the entries of `encode(text)` gives `byte_prefix + text.encode("utf-8")` whenever
    the text encodes without unknowns. The table decode/bytes.py's byte-level view of a language model reads."""
    raise ValueError(f"{type(self).__name__} has no byte-level view (its ids stand for no fixed bytes); use a "
                     "byte, character, SentencePiece or byte-level / Metaspace Hugging Face vocabulary")

  def is_canonical(self, ids: Sequence[int]) -> bool:
    """Whether `ids` are this vocabulary's own encoding of the text they spell (encode(decode(ids)) == ids, read
    through token_bytes). A text has one canonical encoding; a model trained on encoded text gives the others
    (other segmentations of the same bytes) little mass, and a sampler can still draw them ("phantom edits":
    different ids, the same text)."""
    table = self.token_bytes()
    parts = [table[int(i)] for i in ids]
    if any(p is None for p in parts):
      return False
    raw = b"".join(parts)
    if not raw.startswith(self.byte_prefix):
      return False
    try:
      text = raw[len(self.byte_prefix):].decode("utf-8")
    except UnicodeDecodeError:
      return False
    return self.encode(text) == [int(i) for i in ids]

  def encode_with_masks(self, text: str) -> list[int]:
    """Encodes text in which each "[MASK]" stands for one masked token."""
    ids: list[int] = []
    for i, piece in enumerate(text.split(MASK_TEXT)):
      if i:
        ids.append(self.mask_id)
      ids.extend(self.encode(piece))
    return ids


class ByteVocabulary(Vocabulary):
  """UTF-8 bytes shifted by the 4 special ids: size 260."""

  @property
  def size(self) -> int:
    return 256 + 4

  @property
  def first_normal_id(self) -> int:
    return 4

  def encode(self, text: str) -> list[int]:
    return (np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + 4).tolist()

  def token_bytes(self) -> tuple[bytes | None, ...]:
    return (None,) * 4 + tuple(bytes([b]) for b in range(256))

  def decode(self, ids: Sequence[int]) -> str:
    out, buf = [], bytearray()
    for i in ids:
      i = int(i)
      if i >= 4:
        buf.append(i - 4)
      elif i == MASK:
        out.append(buf.decode("utf-8", errors="replace")); buf = bytearray(); out.append(MASK_TEXT)
    out.append(buf.decode("utf-8", errors="replace"))
    return "".join(out)


class SymbolVocabulary(Vocabulary):
  """`num_symbols` abstract symbols after the 4 special ids (synthetic languages, data/synthetic.py): symbol k is id
  4 + k and prints as a letter (a-z, then A-Z) up to 52 symbols, as "<k>" beyond."""
  _LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

  def __init__(self, num_symbols: int):
    if num_symbols < 1:
      raise ValueError(f"data.vocab_size={num_symbols}: a symbol vocabulary needs at least one symbol")
    self.num_symbols = num_symbols

  @property
  def size(self) -> int:
    return 4 + self.num_symbols

  @property
  def first_normal_id(self) -> int:
    return 4

  def _name(self, k: int) -> str:
    return self._LETTERS[k] if self.num_symbols <= len(self._LETTERS) else f"<{k}>"

  def encode(self, text: str) -> list[int]:
    """Letters (<= 52 symbols) or "<k>" tokens; whitespace is ignored."""
    if self.num_symbols <= len(self._LETTERS):
      ids = [4 + self._LETTERS.index(c) for c in text if not c.isspace()]
    else:
      ids = [4 + int(piece) for piece in text.replace("<", " ").replace(">", " ").split()]
    bad = [i - 4 for i in ids if not 0 <= i - 4 < self.num_symbols]
    if bad:
      raise ValueError(f"text {text[:40]!r} has symbols {bad[:3]} outside this vocabulary of {self.num_symbols}")
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    return "".join(MASK_TEXT if int(i) == MASK else self._name(int(i) - 4) for i in ids if int(i) >= 4 or
                   int(i) == MASK)


class SizingVocabulary(Vocabulary):
  """A stand-in of `size` ids for sizing a model without training its vocabulary (launch.py --mode=compile_only):
  the special ids, then ids that text encodes to byte by byte (4 + byte mod (size - 4)), so prompts still encode.
  Its ids mean nothing; never train or decode with it."""

  def __init__(self, size: int):
    if size < 5:
      raise ValueError(f"data.vocab_size={size}: a vocabulary needs at least 5 ids")
    self._size = size

  @property
  def size(self) -> int:
    return self._size

  @property
  def first_normal_id(self) -> int:
    return 4

  def encode(self, text: str) -> list[int]:
    return [4 + b % (self._size - 4) for b in text.encode("utf-8")]

  def decode(self, ids: Sequence[int]) -> str:
    return "".join(MASK_TEXT if int(i) == MASK else "?" for i in ids if int(i) >= 4 or int(i) == MASK)


class CharVocabulary(Vocabulary):
  """Characters: the special ids, 4 = unknown, then `chars` in order (e.g. the most frequent characters of the
  training split, `from_texts`); a character outside the list encodes as unknown."""

  def __init__(self, chars: str):
    if len(set(chars)) != len(chars):
      raise ValueError("CharVocabulary: characters must be distinct")
    self.chars = chars
    self._index = {c: 5 + i for i, c in enumerate(chars)}

  @classmethod
  def from_texts(cls, texts: Iterable[str], size: int) -> "CharVocabulary":
    """The `size - 5` most frequent characters of `texts` (ties by code point), so that `size` ids in all."""
    if size < 6:
      raise ValueError(f"data.vocab_size={size}: a character vocabulary needs at least 6 ids (5 special + 1)")
    counts: collections.Counter = collections.Counter()
    for t in texts:
      counts.update(t)
    return cls("".join(sorted(counts, key=lambda c: (-counts[c], c))[:size - 5]))

  @property
  def size(self) -> int:
    return 5 + len(self.chars)

  @property
  def fingerprint(self) -> str:
    return "char:" + hashlib.sha256(self.chars.encode()).hexdigest()[:16]

  @property
  def first_normal_id(self) -> int:
    return 5

  def encode(self, text: str) -> list[int]:
    return [self._index.get(c, 4) for c in text]

  def token_bytes(self) -> tuple[bytes | None, ...]:
    return (None,) * 5 + tuple(c.encode("utf-8") for c in self.chars)

  def decode(self, ids: Sequence[int]) -> str:
    out = []
    for i in map(int, ids):
      if i == MASK:
        out.append(MASK_TEXT)
      elif i == 4:
        out.append("\ufffd")
      elif i >= 5:
        out.append(self.chars[i - 5])
    return "".join(out)


class SentencePieceVocabulary(Vocabulary):
  """A SentencePiece model whose special ids follow the shared layout (see `train_sentencepiece`). Text is encoded
  by the same pieces through `tokenizers` (data/spm_tokenizer.py: the tokenizer an export carries, so exported
  checkpoints read text as training did); models it cannot convert keep SentencePiece's encoder (`convert_note`)."""

  def __init__(self, model_path: str | os.PathLike):
    import sentencepiece as spm
    if not os.path.exists(model_path):
      raise FileNotFoundError(f"SentencePiece model {model_path} does not exist; set data.vocab to 'spm' to train one")
    self.model_path = str(model_path)
    self._sp = spm.SentencePieceProcessor(model_file=self.model_path)
    if self._sp.piece_to_id(MASK_TEXT) != MASK or self._sp.pad_id() != PAD or self._sp.bos_id() != CLS:
      raise ValueError(f"{model_path}: special ids differ from the layout pad=0 cls=1 sep=2 [MASK]=3; "
                       "retrain it with data.vocab.train_sentencepiece")
    from data import spm_tokenizer
    self.convert_note = spm_tokenizer.convertible(self.model_path)
    self._tok = None if self.convert_note else spm_tokenizer.unigram_tokenizer(self.model_path)

  @property
  def size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def fingerprint(self) -> str:
    return "spm:" + hashlib.sha256(pathlib.Path(self.model_path).read_bytes()).hexdigest()[:16]

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    if self._tok is not None:
      return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]
    return self._sp.encode(list(texts))

  @property
  def first_normal_id(self) -> int:
    return 5

  def encode(self, text: str) -> list[int]:
    if self._tok is not None:
      return self._tok.encode(text, add_special_tokens=False).ids
    return self._sp.encode(text)

  @property
  def byte_prefix(self) -> bytes:
    from data import spm_tokenizer
    return b" " if spm_tokenizer.adds_dummy_prefix(self.model_path) else b""

  def token_bytes(self) -> tuple[bytes | None, ...]:
    """A piece's text with "\u2581" as a space; byte-fallback pieces <0xAB> are that byte; control and unknown
    pieces are None. (An identity normaliser is assumed, as data.vocab.train_sentencepiece trains: a normalising
    model's pieces stand for normalised text, not the input's bytes.)"""
    out = []
    for i in range(self.size):
      piece = self._sp.id_to_piece(i)
      if i < self.first_normal_id or self._sp.is_control(i) or self._sp.is_unknown(i):
        out.append(None)
      elif self._sp.is_byte(i):
        out.append(bytes([int(piece[3:5], 16)]))
      else:
        out.append(piece.replace("\u2581", " ").encode("utf-8"))
    return tuple(out)

  def decode(self, ids: Sequence[int]) -> str:
    out, run = [], []
    for i in ids:
      i = int(i)
      if i == MASK:
        out.append(self._sp.decode(run)); run = []; out.append(MASK_TEXT)
      elif i >= self.first_normal_id:
        run.append(i)
    out.append(self._sp.decode(run))
    return "".join(out)


def train_sentencepiece(lines: Iterable[str], vocab_size: int, model_prefix: str, model_type: str = "unigram",
                        max_sentences: int = 200_000) -> str:
  """Trains a SentencePiece model with the shared special-id layout; byte fallback covers every character.

  Whitespace is kept as written (code is whitespace-sensitive); newlines fall back to byte pieces.
  The model is written to a temporary name and renamed, so a crash never leaves a half-written file.
  """
  import sentencepiece as spm
  tmp_prefix = f"{model_prefix}.tmp{os.getpid()}"
  try:
    _train_spm(spm, lines, vocab_size, tmp_prefix, model_type, max_sentences)
  except RuntimeError as e:   # SentencePiece reports a size the corpus cannot give as an INTERNAL error
    low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", str(e))
    high = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", str(e))
    if low:
      raise ValueError(f"data.vocab_size={vocab_size} is below the {low.group(2)} distinct characters of the corpus "
                       f"(plus special pieces) that a SentencePiece vocabulary must hold; set --config.data.vocab_size "
                       f"to at least {int(low.group(2)) + 8}") from None
    if high:
      raise ValueError(f"data.vocab_size={vocab_size} is more pieces than SentencePiece can find in this corpus (at "
                       f"most {high.group(2)}); set --config.data.vocab_size={high.group(2)} or less, or train on "
                       "more text") from None
    raise
  for ext in (".model", ".vocab"):
    os.replace(tmp_prefix + ext, model_prefix + ext)
  return model_prefix + ".model"


def _train_spm(spm, lines, vocab_size, tmp_prefix, model_type, max_sentences):
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_prefix=tmp_prefix, vocab_size=vocab_size, model_type=model_type,
      character_coverage=1.0, byte_fallback=True, pad_id=PAD, bos_id=CLS, eos_id=SEP, unk_id=4,
      control_symbols=[MASK_TEXT], remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
      split_digits=True, normalization_rule_name="identity", input_sentence_size=max_sentences,
      shuffle_input_sentence=True, num_threads=os.cpu_count() or 1, minloglevel=2)


def cache_dir(configured: str = "") -> pathlib.Path:
  path = pathlib.Path(configured or os.environ.get("LMKIT_CACHE", "") or
                      pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "lmkit")
  path.mkdir(parents=True, exist_ok=True)
  return path


def cached_sentencepiece(lines: Sequence[str], vocab_size: int, fingerprint: str, model_type: str = "unigram",
                         cache: str = "") -> SentencePieceVocabulary:
  """Trains once per (corpus fingerprint, size, type) and reuses the cached model afterwards."""
  key = hashlib.sha256(f"v1|{fingerprint}|{vocab_size}|{model_type}".encode()).hexdigest()[:16]
  prefix = str(cache_dir(cache) / f"spm_{model_type}_{vocab_size}_{key}")
  if not os.path.exists(prefix + ".model"):
    # SentencePiece reports no progress; say what runs and where it is kept (about a minute for the default job).
    print(f"training a SentencePiece vocabulary ({vocab_size:,} pieces, {model_type}) on {len(lines):,} "
          f"documents, once; cached as {prefix}.model", flush=True)
    train_sentencepiece(lines, vocab_size, prefix, model_type)
  return SentencePieceVocabulary(prefix + ".model")
