"""Exact byte-level probabilities (decode/bytes.py) against the truth, on every byte prefix of a finite language:
the fixture grammar's sentences (data/sentences.py house_questions, words joined by spaces) with seeded random
masses, a tokenizer trained on them (SentencePiece unigram or GPT-2-style byte-level BPE), and the exact token LM
of the language under that tokenizer (the push-forward of the sentences' masses through its encoding, then EOS).
For each prefix: the byte-level view's next-byte law (the 256 bytes and the end), naive prompting's (tokenize the
prompt, read the next token's first byte) and token healing's, each against the true law (total variation).

  python -m bench.byte_level_exact --seed 0 --tokenizer spm [--max_prompts 0]

The last line: `btr_max_tv=<x> naive_max_tv=<y> healing_max_tv=<z> prompts=<n>` (bench/results/byte_level_exact_<tok>.json
has the means too).
"""
import tempfile
import time

import numpy as np
from absl import app, flags

from bench import record

_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sentences' masses.")
_TOKENIZER = flags.DEFINE_enum("tokenizer", "spm", ["spm", "bpe"], "The tokenizer trained on the sentences.")
_MAX_PROMPTS = flags.DEFINE_integer("max_prompts", 0, "Check only this many prefixes (0: every one).")


def _language(seed: int) -> dict[str, float]:
  from data.grammar import grammar_words
  from data.sentences import house_questions
  lang = house_questions()
  words = grammar_words()
  masses = np.random.default_rng(seed).dirichlet(np.full(len(lang.sentences), 0.5))
  out: dict[str, float] = {}
  for s, p in zip(lang.sentences, masses):
    text = " ".join(words[i - 4] for i in s[:-1])
    out[text] = out.get(text, 0.0) + float(p)
  return out


def _vocab(kind: str, texts: list[str]):
  if kind == "spm":
    from data.vocab import SentencePieceVocabulary, train_sentencepiece
    return SentencePieceVocabulary(train_sentencepiece(texts, 300, tempfile.mkdtemp() + "/spm"))
  import transformers
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  from data.hf_tokenizer import HfTokenizerVocabulary
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.add_special_tokens(["<|endoftext|>"])
  path = tempfile.mkdtemp()
  transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                      unk_token="<|endoftext|>").save_pretrained(path)
  return HfTokenizerVocabulary(path)


def _push_forward(lang: dict[str, float], vocab):
  from decode.bytes import PrefixModel
  table: dict[tuple[int, ...], np.ndarray] = {}
  for s, p in lang.items():
    ids = tuple(vocab.encode(s)) + (vocab.sep_id,)
    for t in range(len(ids)):
      table.setdefault(ids[:t], np.zeros(vocab.size))[ids[t]] += p
  logs = {}

  def logprobs(prefixes):
    rows = []
    for pre in map(tuple, prefixes):
      if pre not in logs:
        row = table.get(pre)
        with np.errstate(divide="ignore"):
          logs[pre] = np.log(row / row.sum()) if row is not None else np.full(vocab.size, -np.inf)
      rows.append(logs[pre])
    return np.stack(rows)
  return PrefixModel(logprobs)


def main(argv):
  del argv
  from decode import bytes as byte_lm
  t0 = time.time()
  lang = _language(_SEED.value)
  vocab = _vocab(_TOKENIZER.value, list(lang) * 4)
  model = _push_forward(lang, vocab)
  view = byte_lm.ByteLevel.of(model, vocab)
  truth: dict[bytes, np.ndarray] = {}
  for s, p in lang.items():
    b = s.encode()
    for k in range(len(b) + 1):
      truth.setdefault(b[:k], np.zeros(257))[b[k] if k < len(b) else byte_lm.END] += p
  order = sorted(truth)
  if _MAX_PROMPTS.value:
    order = order[:_MAX_PROMPTS.value]
  tv = {"btr": [], "naive": [], "healing": []}
  path = [(b"", view.start())]   # the states of x's ancestors (sorted order is depth first: the parent is on it)
  for x in order:
    while path[-1][0] != x[:-1] and path[-1][0] != x:
      path.pop()
    state = path[-1][1] if path[-1][0] == x else view.advance(path[-1][1], x[-1])
    if path[-1][0] != x:
      path.append((x, state))
    want = truth[x] / truth[x].sum()
    tv["btr"].append(0.5 * float(np.abs(np.exp(view.next_byte_logprobs(state)) - want).sum()))
    if x:
      for name, fn in (("naive", byte_lm.naive_next_byte_logprobs), ("healing", byte_lm.healed_next_byte_logprobs)):
        tv[name].append(0.5 * float(np.abs(np.exp(fn(model, vocab, x.decode())) - want).sum()))
  figures = {"tokenizer": _TOKENIZER.value, "seed": _SEED.value, "texts": len(lang), "prompts": len(order),
             "vocab_size": vocab.size, "seconds": round(time.time() - t0, 1),
             **{f"{k}_max_tv": max(v) for k, v in tv.items()}, **{f"{k}_mean_tv": float(np.mean(v)) for k, v in tv.items()}}
  record.write(f"byte_level_exact_{_TOKENIZER.value}", figures,
               note="exactness, not speed: no headline ratio (RESULTS.md has the table)")
  print(f"btr_max_tv={figures['btr_max_tv']:.3g} naive_max_tv={figures['naive_max_tv']:.3g} "
        f"healing_max_tv={figures['healing_max_tv']:.3g} prompts={len(order)}", flush=True)


if __name__ == "__main__":
  app.run(main)
