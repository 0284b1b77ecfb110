"""SentencePiece encoding: our SentencePiece vocabulary (the default job's; it encodes through the converted
`tokenizers` Unigram, data/spm_tokenizer.py) against SentencePiece's own encoder on the same documents, in one
process, alternating, best of --repeats.

  python -m bench.spm_encode --docs=3000 --repeats=5

Prints one JSON line: documents, tokens, seconds and documents/s of each, the ratio, and how many documents the
two segment differently (ties between equal-score segmentations; data/spm_tokenizer.py).
"""
import json
import time

from absl import app, flags

from bench import record
from bench.timing import cpu_model

_DOCS = flags.DEFINE_integer("docs", 3000, "Standard-library documents (the default job's corpus) to encode.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repetitions of each encoder (best kept).")


def main(argv):
  del argv
  from configs.modernbert_mlm import get_config
  from data.sources import corpus_from_config, vocab_from_config
  config = get_config()
  vocab = vocab_from_config(config.data)
  docs = list(corpus_from_config(config.data).train[:_DOCS.value])
  encoders = {"ours": vocab.encode_batch, "sentencepiece": lambda d: vocab._sp.encode(list(d))}
  best = {k: float("inf") for k in encoders}
  out = {}
  for _ in range(_REPEATS.value):
    for name, encode in encoders.items():
      t = time.perf_counter()
      out[name] = encode(docs)
      best[name] = min(best[name], time.perf_counter() - t)
  result = {"cpu": cpu_model(), "docs": len(docs), "tokens": sum(map(len, out["ours"])),
            "ours_s": round(best["ours"], 4), "sentencepiece_s": round(best["sentencepiece"], 4),
            "ours_docs_per_s": round(len(docs) / best["ours"]),
            "sentencepiece_docs_per_s": round(len(docs) / best["sentencepiece"]),
            "speedup": round(best["sentencepiece"] / best["ours"], 2),
            "docs_segmented_differently": sum(a != b for a, b in zip(out["ours"], out["sentencepiece"]))}
  print(json.dumps(result))
  record.write("spm_encode", result, headline=[
      record.row(f"SentencePiece encoding of {len(docs):,} documents", len(docs) / best["ours"],
                 len(docs) / best["sentencepiece"], "documents/s", reference_name="SentencePiece's encode")])


if __name__ == "__main__":
  app.run(main)
