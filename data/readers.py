"""Documents from files: plain text (.txt: paragraphs), JSON lines (.jsonl: one document per line, its
`text_field`) and Parquet (.parquet: its `text_field` column), cut into work units that workers read
independently (data/prepare.py) or read whole (data/corpus.py for small corpora).

Units: a .txt file is one unit; a .jsonl file is cut into byte ranges of about `unit_bytes` (a line belongs to
the range its first byte lies in); a .parquet file is one unit per row group. The validation split is decided by
the document itself: `crc32(utf-8 text) % 100 < validation_percent`, so it does not depend on units, workers or
file order (and duplicated documents fall on the same side).
"""
import dataclasses
import glob
import json
import os
import pathlib
import re
import zlib
from typing import Iterator, Sequence

SUFFIXES = (".txt", ".jsonl", ".parquet")
SPLIT_RULE = "crc32(utf-8 text) % 100 < validation_percent"


def split_paragraphs(text: str, max_chars: int) -> list[str]:
  docs = []
  for para in re.split(r"\n[ \t]*\n", text):
    para = para.strip("\n")
    if not para.strip():
      continue
    while len(para) > max_chars:
      cut = para.rfind("\n", 0, max_chars)
      cut = cut if cut > 0 else max_chars
      docs.append(para[:cut])
      para = para[cut:].lstrip("\n")
    if para.strip():
      docs.append(para)
  return docs


def is_validation(text: str, validation_percent: int) -> bool:
  return zlib.crc32(text.encode("utf-8")) % 100 < validation_percent


def expand_inputs(patterns: Sequence[str], flag: str = "--input") -> list[pathlib.Path]:
  """Files, directories (their .txt/.jsonl/.parquet files, recursively) and globs -> sorted unique files."""
  files: set[pathlib.Path] = set()
  for pat in patterns:
    p = pathlib.Path(pat)
    if p.is_dir():
      matched = [f for f in p.rglob("*") if f.suffix in SUFFIXES]
    elif p.is_file():
      matched = [p]
    else:
      matched = [pathlib.Path(f) for f in glob.glob(pat, recursive=True) if os.path.isfile(f)]
    if not matched:
      raise FileNotFoundError(f"{flag}={pat}: no such file, or no .txt/.jsonl/.parquet files match it")
    for f in matched:
      if f.suffix not in SUFFIXES:
        raise ValueError(f"{flag}: {f} is neither .txt, .jsonl nor .parquet; convert it or leave it out")
      files.add(f.resolve())
  return sorted(files)


@dataclasses.dataclass(frozen=True)
class Unit:
  """One independently readable piece of one file: bytes [start, stop) of a .jsonl, row groups [start, stop) of
  a .parquet, or a whole .txt (start = stop = 0)."""
  path: str
  start: int = 0
  stop: int = 0

  @property
  def name(self) -> str:   # stable across runs: the shard file names of data/prepare.py derive from it
    return f"{pathlib.Path(self.path).stem}-{zlib.crc32(self.path.encode()):08x}-{self.start:012d}"


def units(path: pathlib.Path, unit_bytes: int = 64 << 20) -> list[Unit]:
  if path.suffix == ".jsonl":
    size = path.stat().st_size
    return [Unit(str(path), s, min(s + unit_bytes, size)) for s in range(0, max(size, 1), unit_bytes)]
  if path.suffix == ".parquet":
    import pyarrow.parquet as pq
    n = pq.ParquetFile(path).num_row_groups
    return [Unit(str(path), g, g + 1) for g in range(n)]
  return [Unit(str(path))]


def read_unit(unit: Unit, text_field: str = "text", max_doc_chars: int = 2048) -> Iterator[str]:
  """The unit's non-empty documents, in file order."""
  path = pathlib.Path(unit.path)
  if path.suffix == ".jsonl":
    yield from _jsonl(path, unit.start, unit.stop, text_field)
  elif path.suffix == ".parquet":
    import pyarrow.parquet as pq
    f = pq.ParquetFile(path)
    if text_field not in f.schema_arrow.names:
      raise ValueError(f"{path} has no column {text_field!r} (columns: {f.schema_arrow.names}); set the text field "
                       "(--text_field / data.text_field)")
    for g in range(unit.start, unit.stop):
      for text in f.read_row_group(g, columns=[text_field]).column(0).to_pylist():
        if text and text.strip():
          yield text
  else:
    yield from split_paragraphs(path.read_bytes().decode("utf-8", errors="replace"), max_doc_chars)


def _jsonl(path: pathlib.Path, start: int, stop: int, field: str) -> Iterator[str]:
  with open(path, "rb") as f:
    if start:
      f.seek(start - 1)
      f.readline()          # the line holding byte start - 1 belongs to the previous unit
    while f.tell() < stop:
      at = f.tell()
      line = f.readline()
      if not line:
        break
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path} at byte {at}: not a JSON line ({e.msg}); fix or remove that line") from None
      text = obj.get(field) if isinstance(obj, dict) else None
      if not isinstance(text, str):
        raise ValueError(f"{path} at byte {at}: no string field {field!r} (keys: {sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__}); "
                         "set the text field (--text_field / data.text_field)")
      if text.strip():
        yield text


def read_documents(patterns: Sequence[str], text_field: str = "text", max_doc_chars: int = 2048,
                   flag: str = "data.corpus") -> Iterator[str]:
  """Every document of every matched file, in order (small corpora read into memory by data/corpus.py)."""
  for path in expand_inputs(patterns, flag):
    for u in units(path):
      yield from read_unit(u, text_field, max_doc_chars)
