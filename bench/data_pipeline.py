"""Data pipeline benchmarks (BENCHMARKS.md, data_pipeline): `python -m data.prepare` against a plain `tokenizers`
batch-encode loop, the `tokenized:` training pipeline against the trainer's own step, and the pipeline's resident
memory at two corpus sizes against the in-memory text path.

  python -m bench.data_pipeline                         # all three parts (about 10 minutes on 2 cores)
  python -m bench.data_pipeline --parts=prepare --prepare_mb=64

Corpora are the embedded standard-library paragraphs repeated into JSONL files under --workdir (kept between runs).
The tokenizer for `prepare` is a WordPiece of 8k pieces trained with `tokenizers` on the embedded corpus (saved as a
Hugging Face directory, used as data.vocab=hf:DIR); the pipeline and memory parts use the byte vocabulary, whose
shards are the largest per character (one token per byte).
"""
import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

from bench import record
from bench.timing import cpu_model

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/lmkit_data_bench", "Corpora, tokenizer and shards.")
_PARTS = flags.DEFINE_list("parts", ["prepare", "pipeline", "memory"], "prepare, pipeline, memory")
_PREPARE_MB = flags.DEFINE_integer("prepare_mb", 64, "Corpus size for the prepare timings (MB of text).")
_MEMORY_MB = flags.DEFINE_list("memory_mb", ["256", "1100"], "Corpus sizes for the memory part (MB of text).")
_BATCHES = flags.DEFINE_integer("batches", 2000, "Batches read in each memory measurement.")
_TRAINER_STEPS = flags.DEFINE_integer("trainer_steps", 3,
                                      "Timed trainer steps per shape (bench.train_throughput.measure).")


def corpus_file(megabytes: int) -> str:
  """The embedded corpus repeated into a JSONL file of about `megabytes` MB of text."""
  path = os.path.join(_WORKDIR.value, f"corpus_{megabytes}mb.jsonl")
  if not os.path.exists(path):
    from data.corpus import load_corpus
    docs = list(load_corpus("stdlib", 2048).train)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    size, copy = 0, 0
    with open(path + ".tmp", "w") as f:
      while size < megabytes * 1e6:
        for d in docs:   # each copy differs (the split and shuffling see distinct documents)
          line = json.dumps({"text": f"# copy {copy}\n{d}"}) + "\n"
          f.write(line)
          size += len(line)
          if size >= megabytes * 1e6:
            break
        copy += 1
    os.replace(path + ".tmp", path)
  return path


def wordpiece_dir() -> str:
  path = os.path.join(_WORKDIR.value, "wordpiece8k")
  if not os.path.exists(os.path.join(path, "tokenizer.json")):
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from data.corpus import load_corpus
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(list(load_corpus("stdlib", 2048).train),
                            trainers.WordPieceTrainer(vocab_size=8192,
                                                      special_tokens=["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]))
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", cls_token="[CLS]",
                                         sep_token="[SEP]", mask_token="[MASK]", unk_token="[UNK]").save_pretrained(path)
  return path


def prepared(corpus: str, vocab: str, name: str, workers: int = 2) -> tuple[str, float]:
  """(shard directory, seconds): data.prepare of `corpus` (skipped when already complete)."""
  from data.prepare import prepare
  out = os.path.join(_WORKDIR.value, name)
  t = time.perf_counter()
  if not os.path.exists(os.path.join(out, "index.json")):
    prepare([corpus], vocab, out, workers=workers, unit_bytes=16 << 20, progress=False)
  return out, time.perf_counter() - t


def part_prepare() -> dict:
  import shutil

  from tokenizers import Tokenizer
  from data import readers
  corpus, tok_dir = corpus_file(_PREPARE_MB.value), wordpiece_dir()
  # Reference: one process reading the same JSONL lines and batch-encoding them with `tokenizers` (its own threads).
  tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
  t, tokens, batch = time.perf_counter(), 0, []
  for u in readers.units(readers.expand_inputs([corpus])[0], 16 << 20):
    for doc in readers.read_unit(u):
      batch.append(doc)
      if len(batch) == 1024:
        tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False)); batch = []
  tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
  ref_s = time.perf_counter() - t
  rows = [("plain tokenizers encode_batch loop (1 process)", tokens, ref_s)]
  for workers in (1, 2):
    out = os.path.join(_WORKDIR.value, f"prepare_w{workers}")
    shutil.rmtree(out, ignore_errors=True)
    from data.prepare import prepare
    t = time.perf_counter()
    index = prepare([corpus], f"hf:{tok_dir}", out, workers=workers, unit_bytes=16 << 20, progress=False)
    s = time.perf_counter() - t
    n = index["splits"]["train"]["tokens"] + index["splits"]["validation"]["tokens"]
    assert n == tokens, (n, tokens)
    rows.append((f"python -m data.prepare --workers={workers} (ArrayRecord shards written)", n, s))
  print(f"\n### prepare: {os.path.getsize(corpus) / 1e6:.0f} MB of JSONL, WordPiece 8k (tokens/s)\n")
  print("| what | tokens | seconds | tokens/s | vs reference |\n|---|---|---|---|---|")
  for name, n, s in rows:
    print(f"| {name} | {n:,} | {s:.1f} | {n / s:,.0f} | {ref_s / s:.2f}x |")
  return {"corpus_mb": os.path.getsize(corpus) / 1e6,
          "rows": [{"what": name, "tokens": n, "seconds": s, "tokens_per_s": n / s} for name, n, s in rows]}


def part_pipeline() -> dict:
  import jax.numpy as jnp

  from bench import train_throughput
  from train.flops import measure_matmul_peak
  out, _ = prepared(corpus_file(_PREPARE_MB.value), "byte", f"byte_{_PREPARE_MB.value}mb")
  peak = measure_matmul_peak(dtype=jnp.float32)
  print("\n### tokenized: pipeline vs the trainer's step (byte vocabulary)\n")
  print("| shape | batch x seq | trainer step (s) | trainer tokens/s | pipeline tokens/s | pipeline / trainer |")
  print("|---|---|---|---|---|---|")
  shapes = {}
  for name in ("default", "base"):
    r = train_throughput.measure(name, _TRAINER_STEPS.value, peak, overrides={"data.corpus": f"tokenized:{out}",
                                                                      "data.vocab": "byte"})
    print(f"| {name} | {r['batch']} x {r['seq']} | {r['step_s']:.3f} | {r['tps']:,.0f} | {r['pipeline_tps']:,.0f} | "
          f"{r['pipeline_tps'] / r['tps']:.0f}x |", flush=True)
    shapes[name] = {k: r[k] for k in ("batch", "seq", "step_s", "tps", "pipeline_tps")}
  return shapes


_CHILD = """
import resource, sys, time, json
sys.path.insert(0, {root!r})
from configs import modernbert_mlm
from data.sources import Documents, vocab_from_config
c = modernbert_mlm.get_config()
c.unlock(); c.data.corpus, c.data.vocab = {corpus!r}, "byte"
src = Documents(c.data, vocab_from_config(c.data))
it = src.train_iterator(global_batch=c.train.batch_size, seed=0)
t = time.perf_counter()
for _ in range({batches}):
  b = next(it)
s = time.perf_counter() - t
print(json.dumps({{"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "tokens_per_s": {batches} * b["tokens"].size / s}}))
"""


def _peak_rss(corpus: str) -> dict:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = _CHILD.format(root=root, corpus=corpus, batches=_BATCHES.value)
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                     "JAX_PLATFORMS": "cpu"})
  if r.returncode:
    raise RuntimeError(r.stderr[-2000:])
  return json.loads(r.stdout.strip().splitlines()[-1])


def part_memory() -> dict:
  print(f"\n### resident memory of the training pipeline ({_BATCHES.value} batches of the default shape, byte "
        "vocabulary; peak RSS of the process)\n")
  print("| corpus | text MB | shards MB | tokenized: peak RSS (MB) | tokenized: tokens/s | in-memory text: peak RSS "
        "(MB) |\n|---|---|---|---|---|---|")
  sizes = {}
  for mb in map(int, _MEMORY_MB.value):
    corpus = corpus_file(mb)
    out, _ = prepared(corpus, "byte", f"byte_{mb}mb")
    shards = sum(os.path.getsize(os.path.join(out, "shards", f)) for f in os.listdir(os.path.join(out, "shards")))
    tok = _peak_rss(f"tokenized:{out}")
    text = _peak_rss(corpus)
    print(f"| {os.path.basename(corpus)} | {os.path.getsize(corpus) / 1e6:,.0f} | {shards / 1e6:,.0f} | "
          f"{tok['rss_mb']:,.0f} | {tok['tokens_per_s']:,.0f} | {text['rss_mb']:,.0f} |", flush=True)
    sizes[mb] = {"text_mb": os.path.getsize(corpus) / 1e6, "shards_mb": shards / 1e6, "tokenized": tok,
                 "in_memory_text": text}
  return {"batches": _BATCHES.value, "corpora": sizes}


def main(argv):
  del argv
  import jax
  load = os.getloadavg()[0]
  print(f"machine: {cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__}; load average before: {load:.2f}")
  figures = {"load_average_before": load}
  for part in _PARTS.value:
    figures[part] = {"prepare": part_prepare, "pipeline": part_pipeline, "memory": part_memory}[part]()
  print(f"\nself peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
  headline = []
  if "prepare" in figures:
    ref, *_, two = figures["prepare"]["rows"]
    headline.append(record.row(f"tokenizing {figures['prepare']['corpus_mb']:.0f} MB of JSONL: data.prepare "
                               "--workers=2", two["tokens_per_s"], ref["tokens_per_s"], "tokens/s",
                               reference_name="tokenizers encode_batch loop"))
  if "memory" in figures:
    mb, m = max(figures["memory"]["corpora"].items())
    headline.append(record.row(f"peak RSS reading {_BATCHES.value:,} batches of a {m['text_mb']:,.0f} MB corpus: "
                               "tokenized: shards", m["tokenized"]["rss_mb"], m["in_memory_text"]["rss_mb"], "MB",
                               higher_is_better=False, reference_name="in-memory text"))
  if not os.environ.get("PYTEST_CURRENT_TEST"):   # a test's tiny run must not replace the committed record
    record.write("data_pipeline", figures, headline=headline)


if __name__ == "__main__":
  app.run(main)
