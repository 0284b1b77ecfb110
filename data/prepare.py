"""Tokenize a corpus once into ArrayRecord shards for `data.corpus=tokenized:DIR` (data/tokenized.py).

  python -m data.prepare --input='corpus/*.jsonl' --vocab=hf:/path/to/model_dir --output=/data/tok
  python -m data.prepare --input=books/ --input=extra.parquet --vocab=byte --output=/data/tok --workers=8

`--input`: files, directories or globs of .txt (paragraphs), .jsonl (one document per line, `--text_field`) and
.parquet (the `--text_field` column). `--vocab`: "byte", a SentencePiece .model file or "hf:<dir or
tokenizer.json>" (the run's data.vocab later must be the same). Work units (data/readers.py: a .txt file, ~64 MiB
of a .jsonl, a Parquet row group) are tokenized in `--workers` processes with batch encoding, each written as one
shard per split to a temporary name and renamed, then marked done; a restarted run skips finished units, so an
interrupted prepare resumes where it stopped. The split is decided per document by its hash (readers.SPLIT_RULE).
index.json is written last: its presence means the directory is complete.
"""
import json
import multiprocessing
import os
import pathlib
import sys
import time

from absl import app, flags

from data import readers
from data.tokenized import FORMAT

_BATCH_DOCS = 1024   # documents per encode_batch call


def vocabulary(spec: str):
  """The vocabularies that tokenize without a corpus (the run's data.vocab must name the same)."""
  from data.vocab import ByteVocabulary, SentencePieceVocabulary
  if spec == "byte":
    return ByteVocabulary()
  if spec.endswith(".model"):
    return SentencePieceVocabulary(spec)
  if spec.startswith("hf:"):
    from data import hf_tokenizer
    return hf_tokenizer.load(spec[3:])
  raise ValueError(f"--vocab={spec!r}: use 'byte', a SentencePiece .model file or 'hf:<dir or tokenizer.json>' "
                   "('spm' and 'char' are trained by a run: train one, then pass its .model file)")


def settings(inputs, vocab_spec, vocab, text_field, validation_percent, max_doc_chars, unit_bytes) -> dict:
  return {"format": FORMAT, "inputs": [str(p) for p in inputs], "vocab": {
      "spec": vocab_spec, "fingerprint": vocab.fingerprint, "size": vocab.size},
      "dtype": "uint16" if vocab.size <= 1 << 16 else "int32", "text_field": text_field,
      "validation_percent": validation_percent, "split_rule": readers.SPLIT_RULE, "max_doc_chars": max_doc_chars,
      "unit_bytes": unit_bytes}   # units are named by their offsets: a restart must cut the same units


def _atomic_json(path: pathlib.Path, obj) -> None:
  tmp = path.with_suffix(f".tmp{os.getpid()}")
  tmp.write_text(json.dumps(obj, indent=1) + "\n")
  os.replace(tmp, path)


_VOCAB_CACHE = {}


def prepare_unit(unit: readers.Unit, out: str, s: dict) -> dict:
  """Tokenizes one unit into shards/<split>-<unit>.array_record (a split without documents writes none) and
  done/<unit>.json; returns the done record."""
  import numpy as np
  from array_record.python.array_record_module import ArrayRecordWriter
  spec = s["vocab"]["spec"]
  if spec not in _VOCAB_CACHE:
    _VOCAB_CACHE[spec] = vocabulary(spec)
  vocab = _VOCAB_CACHE[spec]
  root, dtype = pathlib.Path(out), np.dtype(s["dtype"])
  tmp = {split: root / "shards" / f"{split}-{unit.name}.array_record.tmp{os.getpid()}"
         for split in ("train", "validation")}
  writers, stats = {}, {split: {"documents": 0, "tokens": 0, "max_doc_tokens": 0} for split in tmp}
  t0 = time.perf_counter()
  chars = 0

  def flush(docs):
    nonlocal chars
    for doc, ids in zip(docs, vocab.encode_batch(docs)):
      split = "validation" if readers.is_validation(doc, s["validation_percent"]) else "train"
      if split not in writers:
        writers[split] = ArrayRecordWriter(str(tmp[split]), "group_size:1")
      writers[split].write(np.asarray(ids, dtype).tobytes())
      st = stats[split]
      st["documents"] += 1; st["tokens"] += len(ids); st["max_doc_tokens"] = max(st["max_doc_tokens"], len(ids))
      chars += len(doc)

  docs = []
  for doc in readers.read_unit(unit, s["text_field"], s["max_doc_chars"]):
    docs.append(doc)
    if len(docs) == _BATCH_DOCS:
      flush(docs); docs = []
  flush(docs)
  for split, w in writers.items():
    w.close()
    final = root / "shards" / f"{split}-{unit.name}.array_record"
    os.replace(tmp[split], final)
    stats[split]["shard"] = final.name
  record = {"unit": unit.name, "path": unit.path, "start": unit.start, "stop": unit.stop, "chars": chars,
            "seconds": time.perf_counter() - t0, **stats}
  _atomic_json(root / "done" / f"{unit.name}.json", record)
  return record


def _work(args):
  return prepare_unit(*args)


def prepare(inputs, vocab_spec: str, output: str, *, text_field: str = "text", workers: int = 0,
            unit_bytes: int = 64 << 20, validation_percent: int = 5, max_doc_chars: int = 2048,
            progress: bool = True) -> dict:
  """Library form of the command (module docstring); returns the index."""
  files = readers.expand_inputs(inputs)
  vocab = vocabulary(vocab_spec)
  root = pathlib.Path(output)
  (root / "shards").mkdir(parents=True, exist_ok=True)
  (root / "done").mkdir(exist_ok=True)
  s = settings(files, vocab_spec, vocab, text_field, validation_percent, max_doc_chars, unit_bytes)
  saved = root / "prepare.json"
  if saved.is_file():
    old = json.loads(saved.read_text())
    if old != s:
      diff = sorted(k for k in s if old.get(k) != s[k])
      raise ValueError(f"--output={output} holds a prepare run with other settings ({', '.join(diff)}); use a fresh "
                       "--output or the same settings to resume it")
  else:
    _atomic_json(saved, s)
  all_units = [u for f in files for u in readers.units(f, unit_bytes)]
  todo = [u for u in all_units if not (root / "done" / f"{u.name}.json").is_file()]
  workers = workers or os.cpu_count() or 1
  from tqdm import tqdm
  bar = tqdm(total=len(all_units), initial=len(all_units) - len(todo), unit="unit", disable=not progress,
             desc="tokenizing", file=sys.stderr)
  args = [(u, str(root), s) for u in todo]
  if workers == 1 or len(todo) <= 1:
    for a in args:
      r = _work(a); bar.update(); bar.set_postfix(tokens=r["train"]["tokens"] + r["validation"]["tokens"])
  else:
    with multiprocessing.get_context("spawn").Pool(min(workers, len(todo))) as pool:
      for r in pool.imap_unordered(_work, args):
        bar.update(); bar.set_postfix(tokens=r["train"]["tokens"] + r["validation"]["tokens"])
  bar.close()
  done = [json.loads((root / "done" / f"{u.name}.json").read_text()) for u in all_units]
  index = {**s, "splits": {}}
  for split in ("train", "validation"):
    index["splits"][split] = {
        "documents": sum(d[split]["documents"] for d in done), "tokens": sum(d[split]["tokens"] for d in done),
        "max_doc_tokens": max((d[split]["max_doc_tokens"] for d in done), default=0),
        "shards": [d[split]["shard"] for d in done if d[split].get("shard")]}
  index["chars"] = sum(d["chars"] for d in done)
  _atomic_json(root / "index.json", index)
  return index


def _define_flags():
  """The command's flags (defined when run as a command only: absl flags are global, and a library import must not
  claim names such as --vocab)."""
  global _INPUT, _VOCAB, _OUTPUT, _TEXT_FIELD, _WORKERS, _UNIT_MB, _VALIDATION_PERCENT, _MAX_DOC_CHARS
  _INPUT = flags.DEFINE_multi_string("input", [], "files, directories or globs (.txt, .jsonl, .parquet)")
  _VOCAB = flags.DEFINE_string("vocab", "", "byte | PATH.model | hf:<dir or tokenizer.json>")
  _OUTPUT = flags.DEFINE_string("output", "", "output directory")
  _TEXT_FIELD = flags.DEFINE_string("text_field", "text", "JSON field / Parquet column holding the text")
  _WORKERS = flags.DEFINE_integer("workers", 0, "tokenizer processes (0: one per CPU)")
  _UNIT_MB = flags.DEFINE_float("unit_mb", 64, "a .jsonl is cut into work units of about this many MiB")
  _VALIDATION_PERCENT = flags.DEFINE_integer("validation_percent", 5, "share of documents held out (by hash)")
  _MAX_DOC_CHARS = flags.DEFINE_integer("max_doc_chars", 2048, ".txt paragraphs longer than this are cut")


def main(argv):
  del argv
  if not _INPUT.value or not _VOCAB.value or not _OUTPUT.value:
    sys.exit("data.prepare needs --input=..., --vocab=... and --output=DIR")
  os.environ.setdefault("TOKENIZERS_PARALLELISM", "false" if _WORKERS.value != 1 else "true")
  try:
    index = prepare(_INPUT.value, _VOCAB.value, _OUTPUT.value, text_field=_TEXT_FIELD.value,
                    workers=_WORKERS.value, unit_bytes=int(_UNIT_MB.value * (1 << 20)),
                    validation_percent=_VALIDATION_PERCENT.value, max_doc_chars=_MAX_DOC_CHARS.value)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  t, v = index["splits"]["train"], index["splits"]["validation"]
  print(f"wrote {_OUTPUT.value}: train {t['documents']:,} documents / {t['tokens']:,} tokens, validation "
        f"{v['documents']:,} / {v['tokens']:,} ({len(t['shards']) + len(v['shards'])} shards); train with "
        f"--config.data.corpus=tokenized:{_OUTPUT.value} --config.data.vocab={_VOCAB.value}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
