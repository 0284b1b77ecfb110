"""The embedded default corpus: the Python standard library's source, read from the running interpreter.

It is present on every machine and needs no network. Files under test directories are left out. Each file is
split into documents at blank lines (paragraphs: functions, classes, docstrings); paragraphs longer than
`max_chars` are cut at line boundaries. The train/validation split is by file, decided by a hash of the file's
relative path, so it is the same on every machine with the same Python version.
"""
import dataclasses
import hashlib
import os
import pathlib
import sysconfig
import zlib
from typing import Sequence

from data import readers
from data.readers import split_paragraphs  # noqa: F401 - also part of this module's interface (data/tasks.py)

_EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_root() -> pathlib.Path:
  return pathlib.Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: pathlib.Path | None = None) -> list[pathlib.Path]:
  root = root or stdlib_root()
  files = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in _EXCLUDED_DIRS)
    files.extend(pathlib.Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
  return sorted(files)


@dataclasses.dataclass(frozen=True)
class Corpus:
  train: Sequence[str]     # or token arrays (seqio tasks, data.corpus=tokenized:DIR)
  validation: Sequence[str]
  fingerprint: str   # identifies the text (for vocabulary caching)


def _is_validation(relpath: str, percent: int) -> bool:
  return zlib.crc32(relpath.encode()) % 100 < percent


def _is_document_files(source: str) -> bool:
  return source.endswith((".jsonl", ".parquet")) or any(c in source for c in "*?[") or "," in source


def _load_document_files(source: str, max_chars: int, validation_percent: int, text_field: str) -> Corpus:
  """JSONL / Parquet / text files or globs (comma-separated), through data/readers.py, split by document hash."""
  patterns = source.split(",")
  digest = hashlib.sha256()
  for f in readers.expand_inputs(patterns, "data.corpus"):
    digest.update(str(f).encode()); digest.update(str(f.stat().st_size).encode())
  train, validation = [], []
  for doc in readers.read_documents(patterns, text_field, max_chars):
    (validation if readers.is_validation(doc, validation_percent) else train).append(doc)
  if not train or not validation:
    raise ValueError(f"corpus {source!r} (data.corpus) has {len(train)} training and {len(validation)} validation "
                     f"documents (split: {readers.SPLIT_RULE}); give it more documents")
  return Corpus(train, validation, digest.hexdigest()[:16])


def load_corpus(source: str, max_chars: int, validation_percent: int = 5, text_field: str = "text") -> Corpus:
  """`source`: "stdlib", a directory (all *.py and *.txt files, recursively), one text file, or JSONL / Parquet
  files and globs, comma-separated (`text_field` is the JSON field / Parquet column; split by document hash, see
  data/readers.py). For corpora that do not fit in memory, prepare shards (data/prepare.py) and train with
  data.corpus=tokenized:DIR."""
  if _is_document_files(source):
    return _load_document_files(source, max_chars, validation_percent, text_field)
  if source == "stdlib":
    root, files = stdlib_root(), stdlib_files()
  else:
    root = pathlib.Path(source)
    if not root.exists():
      raise FileNotFoundError(f"corpus {source!r} (config key data.corpus) does not exist; use 'stdlib' or a path "
                              "to a text file or a directory of .txt/.py files")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in (".txt", ".py"))
    root = root.parent if root.is_file() else root
    if not files:
      raise FileNotFoundError(f"corpus directory {source!r} (data.corpus) holds no .txt or .py files")
  train, validation = [], []
  digest = hashlib.sha256()
  for path in files:
    rel = str(path.relative_to(root))
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
      raise ValueError(f"corpus file {path} (data.corpus) is binary, not text; point data.corpus at text files")
    text = raw.decode("utf-8", errors="replace")
    digest.update(rel.encode()); digest.update(str(len(text)).encode())
    docs = split_paragraphs(text, max_chars)
    (validation if _is_validation(rel, validation_percent) else train).extend(docs)
  if not validation:  # a single small file: hold out its last documents instead
    n = max(1, len(train) * validation_percent // 100)
    train, validation = train[:-n], train[-n:]
  if not train or not validation:
    raise ValueError(f"corpus {source!r} (data.corpus) has {len(train) + len(validation)} non-empty paragraph(s): "
                     "too little text for a training and a validation split; give it more text")
  return Corpus(train, validation, digest.hexdigest()[:16])
