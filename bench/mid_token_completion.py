"""Completing code whose prompt ends mid-token: the causal LM of configs/causal_lm.py (SentencePiece 4k, trained
on the standard library; trained here first when --workdir holds no run) on held-out files. Each case cuts a
held-out line inside an identifier (at a random interior byte, after up to --context bytes of the file) and asks
for the rest of the identifier; a case passes when the greedy continuation starts with it. Three readings of the
same prompt: naive (the prompt tokenized as typed), token healing (back off the last token, constrain the next)
and the exact byte-level view (decode/bytes.py: bytes from the exact next-byte law until a token boundary, then
tokens). The paper (Phan et al., ICLR 2025) reports about +18% pass@1 over token healing on FIM code benchmarks
with 7B models; this is a small model and prefix-only completion, reported either way.

  python -m bench.mid_token_completion --workdir=/tmp/causal_lm --cases=200 --seed=0

The last line: `naive_pass=<a> healing_pass=<b> bytes_pass=<c> cases=<n>`.
"""
import re
import time

import numpy as np
from absl import app, flags

from bench import record

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/causal_lm", "A configs/causal_lm.py run (trained here if absent).")
_CASES = flags.DEFINE_integer("cases", 200, "Held-out cut points.")
_CONTEXT = flags.DEFINE_integer("context", 200, "Bytes of the file before the cut given as the prompt (at most).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the cut points.")

IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{3,}")


def _cases(docs, n: int, context: int, seed: int) -> list[tuple[str, str]]:
  """(prompt, target): the prompt ends strictly inside an identifier of >= 4 characters; the target is its rest."""
  rng = np.random.default_rng(seed)
  out = []
  while len(out) < n:
    doc = docs[int(rng.integers(len(docs)))].encode()
    spans = [m.span() for m in IDENT.finditer(doc) if m.start() >= 16]
    if not spans:
      continue
    start, end = spans[int(rng.integers(len(spans)))]
    cut = int(rng.integers(start + 1, end))
    try:
      out.append((doc[max(0, cut - context):cut].decode(), doc[cut:end].decode()))
    except UnicodeDecodeError:   # a context window that starts inside a character
      continue
  return out


def main(argv):
  del argv
  from data.sources import corpus_from_config
  from decode import bytes as byte_lm
  from decode.generate import generate_texts
  from bench.trained import trained_causal_lm
  config, exp, step, params = trained_causal_lm(_WORKDIR.value)
  module, vocab = exp.family.module, exp.vocab
  cases = _cases(list(corpus_from_config(config.data).validation), _CASES.value, _CONTEXT.value, _SEED.value)
  prompts = [p for p, _ in cases]
  max_new = 8
  runs, seconds = {}, {}
  for name, fn in (("naive", lambda: generate_texts(module, params, vocab, prompts, max_new_tokens=max_new)),
                   ("healing", lambda: byte_lm.healed_continuations(module, params, vocab, prompts,
                                                                     max_new_tokens=max_new)),
                   ("bytes", lambda: byte_lm.byte_level_continuations(module, params, vocab, prompts,
                                                                      max_new_tokens=max_new))):
    t = time.perf_counter()
    runs[name] = fn()
    seconds[name] = time.perf_counter() - t
  passed = {k: float(np.mean([o.startswith(p + t) for o, (p, t) in zip(v, cases)])) for k, v in runs.items()}
  figures = {"step": step, "cases": len(cases), "context_bytes": _CONTEXT.value, "seed": _SEED.value,
             **{f"{k}_pass": v for k, v in passed.items()}, **{f"{k}_seconds": round(v, 1) for k, v in seconds.items()},
             "examples": [{"prompt_end": p[-30:], "target": t, **{k: runs[k][i][len(p):][:20] for k in runs}}
                          for i, (p, t) in enumerate(cases[:5])]}
  record.write("mid_token_completion", figures,
               headline=[record.row("completing an identifier cut mid-token: pass rate, byte-level view",
                                    passed["bytes"], passed["healing"], "", reference_name="token healing")])
  print(f"naive_pass={passed['naive']:.3f} healing_pass={passed['healing']:.3f} bytes_pass={passed['bytes']:.3f} "
        f"cases={len(cases)}", flush=True)


if __name__ == "__main__":
  app.run(main)
