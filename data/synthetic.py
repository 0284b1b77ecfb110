"""Synthetic languages over a small symbol alphabet, each fixed by a language seed and sampled deterministically
from (sampling seed, sequence index), usable as `data.corpus=synthetic:<name>[:key=value,...]` with
`data.vocab=symbols` and `data.vocab_size` symbols (data/vocab.py SymbolVocabulary: symbol k is id 4 + k).

  markov    sparse first-order Markov chain: each state has `successors` next states (chosen uniformly), weights
            ~ Dirichlet(1, ..., 1), the first symbol from the stationary law (lexinvariant spec §6a: V=16, 2
            successors, entropy rate about 0.58 nats)
  zipf      i.i.d. symbols, p_k proportional to 1/k (V=16: entropy 2.36 nats, majority rate 0.296)
  unigram   in-context unigram: each sequence picks `k` distinct symbols (default 4) and draws i.i.d. uniformly
            from them (loss floor log k)
  pcfg      sentences of the AriEL fixture grammar (ariel.md §5.1, 38 words, uniform over productions), one after
            another; needs data.vocab_size=38
  house_questions
            ONE sentence of the fixture grammar per row, framed `[CLS] words [SEP]` (BOS, EOS) and padded (segment
            id 0), from the training split: 80% of the 8,624 sentences (data/sentences.py split, `held_out`=0.2,
            `seed`=0); the evaluation split is the held-out 20%, so validation loss measures generalisation.
            `weights=sentences` (default: every training sentence equally likely, a dataset read in random order)
            or `weights=rules` (uniform over productions, the spec's oracle, restricted to the split); AriEL's
            language (decode/ariel.py, bench/ariel.py); needs data.vocab_size=38 and data.seq_len >= 12
  symbolic  in-context symbol manipulation: episodes `s | s .` (copy) and `k1 v1 ... kn vn | ki vi .` (key-value
            lookup) over fresh random symbols; symbols 0-1 are the separators `|` `.`, the training split uses
            symbols [2, V/2) and the evaluation split the held-out [V/2, V), so a model that memorised symbol
            identities meets unseen ones at evaluation (the lexinvariant spec's L7)

Each sequence fills a whole row (one document per row: segment ids 1, positions 0..T-1); there is no BOS, so the
first symbol is never a target (house_questions, framed, is the exception). Legend: V symbols, T length.
"""
import dataclasses
from typing import Callable

import numpy as np

from data.grammar import GRAMMAR, grammar_words

LANGUAGES = ("markov", "zipf", "unigram", "pcfg", "house_questions", "symbolic")
FIRST_ID = 4      # data/vocab.py: ids 0-3 are PAD, CLS, SEP, MASK
CLS_ID, SEP_ID = 1, 2
SEPARATOR, END = 0, 1   # the symbolic language's `|` and `.`


@dataclasses.dataclass(frozen=True)
class Language:
  """A language over `num_symbols` symbols: `sample(rng, length, split) -> int64 symbols [length]`."""
  name: str
  num_symbols: int
  sampler: Callable[[np.random.Generator, int, str], np.ndarray]
  entropy_rate: float | None = None      # nats per symbol where it is known in closed form
  majority_rate: float | None = None     # the largest marginal probability of a symbol
  transitions: np.ndarray | None = None  # markov: [V, V]
  stationary: np.ndarray | None = None   # markov: [V]
  framed: bool = False                   # one sentence per row as [CLS] symbols [SEP] + padding
  finite: tuple | None = None            # house_questions: (data.sentences.FiniteLanguage, train idx, held-out idx)

  def sample(self, rng: np.random.Generator, length: int, split: str = "train") -> np.ndarray:
    return self.sampler(rng, length, split)


def _stationary(P: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eig(P.T)
  pi = np.abs(np.real(v[:, np.argmin(np.abs(w - 1))]))
  return pi / pi.sum()


def markov(num_symbols: int, successors: int = 2, seed: int = 0) -> Language:
  if not 1 <= successors <= num_symbols:
    raise ValueError(f"synthetic:markov successors={successors} must be in [1, data.vocab_size={num_symbols}]")
  rng = np.random.default_rng([seed, 17])
  P = np.zeros((num_symbols, num_symbols))
  for s in range(num_symbols):
    nxt = rng.choice(num_symbols, successors, replace=False)
    P[s, nxt] = rng.dirichlet(np.ones(successors))
  pi = _stationary(P)
  with np.errstate(divide="ignore", invalid="ignore"):
    row_h = -np.sum(np.where(P > 0, P * np.log(P), 0.0), axis=1)
  cdf = np.cumsum(P, axis=1)

  def sample(r, length, split):
    del split
    out = np.empty(length, np.int64)
    out[0] = r.choice(num_symbols, p=pi)
    u = r.random(length)
    for t in range(1, length):
      out[t] = min(int(np.searchsorted(cdf[out[t - 1]], u[t], side="right")), num_symbols - 1)
    return out
  return Language("markov", num_symbols, sample, float(pi @ row_h), float(pi.max()), P, pi)


def zipf(num_symbols: int) -> Language:
  p = 1.0 / np.arange(1, num_symbols + 1)
  p /= p.sum()
  return Language("zipf", num_symbols, lambda r, n, split: r.choice(num_symbols, n, p=p),
                  float(-(p * np.log(p)).sum()), float(p.max()))


def unigram(num_symbols: int, k: int = 4) -> Language:
  if not 1 <= k <= num_symbols:
    raise ValueError(f"synthetic:unigram k={k} must be in [1, data.vocab_size={num_symbols}]")

  def sample(r, length, split):
    del split
    return r.choice(r.choice(num_symbols, k, replace=False), length)
  return Language("unigram", num_symbols, sample, float(np.log(k)), None)


def _derive(r: np.random.Generator, symbol: str, out: list[str]) -> None:
  if symbol.startswith("'"):
    out.append(symbol[1:-1])
    return
  alts = GRAMMAR[symbol]
  for s in alts[r.integers(len(alts))]:
    _derive(r, s, out)


def pcfg(num_symbols: int) -> Language:
  words = grammar_words()
  if num_symbols != len(words):
    raise ValueError(f"synthetic:pcfg has {len(words)} words; set --config.data.vocab_size={len(words)}")
  index = {w: i for i, w in enumerate(words)}

  def sample(r, length, split):
    del split
    out: list[int] = []
    while len(out) < length:
      sentence: list[str] = []
      _derive(r, "S", sentence)
      out.extend(index[w] for w in sentence)
    return np.asarray(out[:length], np.int64)
  return Language("pcfg", num_symbols, sample)


def house_questions(num_symbols: int, weights: str = "sentences", held_out: float = 0.2, seed: int = 0) -> Language:
  from data import sentences
  words = grammar_words()
  if num_symbols != len(words):
    raise ValueError(f"synthetic:house_questions has {len(words)} words; set --config.data.vocab_size={len(words)}")
  if not 0 < held_out < 1:
    raise ValueError(f"synthetic:house_questions held_out={held_out} must lie in (0, 1)")
  lang = sentences.house_questions("rules" if weights == "rules" else "sentences")
  if weights not in ("rules", "sentences"):
    raise ValueError(f"synthetic:house_questions weights={weights!r}: use 'sentences' or 'rules'")
  parts = dict(zip(("train", "eval"), sentences.split(lang, held_out, seed)))
  words_of = [np.asarray(s[:-1]) - FIRST_ID for s in lang.sentences]   # without EOS
  law = {k: lang.probs[v] / lang.probs[v].sum() for k, v in parts.items()}

  def sample(r, length, split):
    del length
    idx = parts["train" if split == "train" else "eval"]
    return words_of[idx[r.choice(len(idx), p=law["train" if split == "train" else "eval"])]]
  return Language("house_questions", num_symbols, sample, framed=True,
                  finite=(lang, parts["train"], parts["eval"]))


def symbol_range(num_symbols: int, split: str) -> tuple[int, int]:
  """The symbolic language's content symbols of a split: [2, V/2) for train, [V/2, V) for eval."""
  half = num_symbols // 2
  return (2, half) if split == "train" else (half, num_symbols)


def symbolic_episode(r: np.random.Generator, lo: int, hi: int, max_items: int) -> tuple[list[int], int]:
  """One episode and the index where its answer starts (the symbols after `|`, up to `.`)."""
  n = int(r.integers(2, max_items + 1))
  if r.random() < 0.5:   # copy
    s = list(r.choice(np.arange(lo, hi), n, replace=False))
    return s + [SEPARATOR] + s + [END], n + 1
  keys = list(r.choice(np.arange(lo, hi), n, replace=False))
  values = list(r.choice(np.arange(lo, hi), n))
  i = int(r.integers(n))
  body = [x for kv in zip(keys, values) for x in kv]
  return body + [SEPARATOR, keys[i], values[i], END], 2 * n + 2


def symbolic(num_symbols: int, max_items: int = 5) -> Language:
  if num_symbols // 2 - 2 < max_items:
    raise ValueError(f"synthetic:symbolic needs data.vocab_size >= {2 * (max_items + 2)} for max_items={max_items} "
                     f"(half the symbols are held out for evaluation); raise data.vocab_size")

  def sample(r, length, split):
    lo, hi = symbol_range(num_symbols, split)
    out: list[int] = []
    while len(out) < length:
      out.extend(symbolic_episode(r, lo, hi, max_items)[0])
    return np.asarray(out[:length], np.int64)
  return Language("symbolic", num_symbols, sample)


_BUILDERS = {"markov": (markov, {"successors": int, "seed": int}), "zipf": (zipf, {}),
             "unigram": (unigram, {"k": int}), "pcfg": (pcfg, {}), "symbolic": (symbolic, {"max_items": int}),
             "house_questions": (house_questions, {"weights": str, "held_out": float, "seed": int})}


def parse(corpus: str, num_symbols: int) -> Language:
  """`synthetic:<name>[:key=value,...]` (e.g. synthetic:markov:successors=2,seed=0) over `num_symbols` symbols."""
  _, _, spec = corpus.partition(":")
  name, _, args = spec.partition(":")
  if name not in _BUILDERS:
    raise ValueError(f"data.corpus={corpus!r}: unknown synthetic language {name!r}; use one of {list(LANGUAGES)}")
  build, types = _BUILDERS[name]
  kwargs = {}
  for item in filter(None, args.split(",")):
    key, eq, value = item.partition("=")
    if not eq or key not in types:
      raise ValueError(f"data.corpus={corpus!r}: {item!r} is not an option of synthetic:{name} "
                       f"(options: {sorted(types) or 'none'}; write key=value,...)")
    kwargs[key] = types[key](value)
  return build(num_symbols, **kwargs)


def language_rows(language: Language, seq_len: int, split: str = "train") -> Callable[[int, int], dict]:
  """`example(seed, index)` for data/sources.py Synthetic: one sequence of `seq_len` symbols per row, as token ids
  (symbol + 4), with segment ids 1 and positions 0..T-1."""
  positions = np.arange(seq_len, dtype=np.int32)
  ones = np.ones(seq_len, np.int32)

  def example(seed: int, index: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng([seed, index, 7])
    symbols = language.sample(r, seq_len, split) + FIRST_ID
    if not language.framed:
      return {"tokens": symbols.astype(np.int32), "segment_ids": ones, "positions": positions}
    n = len(symbols) + 2
    if n > seq_len:
      raise ValueError(f"synthetic:{language.name} has sentences of {n} tokens with [CLS]/[SEP]; raise "
                       f"data.seq_len={seq_len} to at least {n}")
    tokens = np.zeros(seq_len, np.int32)
    tokens[:n] = [CLS_ID, *symbols, SEP_ID]
    return {"tokens": tokens, "segment_ids": (positions < n).astype(np.int32),
            "positions": np.where(positions < n, positions, 0).astype(np.int32)}
  return example


def sample_rows(language: Language, n: int, seq_len: int, seed: int, split: str = "eval") -> np.ndarray:
  """n sequences as token ids [n, seq_len] (the rows `language_rows` yields for indices 0..n-1)."""
  example = language_rows(language, seq_len, split)
  return np.stack([example(seed, i)["tokens"] for i in range(n)])


def symbolic_rows(num_symbols: int, n: int, seq_len: int, seed: int, split: str = "eval",
                  max_items: int = 5) -> dict[str, np.ndarray]:
  """Rows of whole symbolic episodes (the last one that would not fit is left out, the row padded with id 0 and
  segment id 0 after it): tokens, segment_ids [n, T]; episode [n, T] (episode number from 1, 0 = padding); answer
  masks copy / lookup [n, T] (the tokens after `|` up to and including `.`, to be predicted)."""
  lo, hi = symbol_range(num_symbols, split)
  out = {k: np.zeros((n, seq_len), np.int32) for k in ("tokens", "segment_ids", "episode")}
  out.update(copy=np.zeros((n, seq_len), bool), lookup=np.zeros((n, seq_len), bool))
  for i in range(n):
    r = np.random.default_rng([seed, i, 13])
    t, e = 0, 1
    while True:
      episode, start = symbolic_episode(r, lo, hi, max_items)
      if t + len(episode) > seq_len:
        break
      sl = slice(t, t + len(episode))
      out["tokens"][i, sl] = np.asarray(episode) + FIRST_ID
      out["segment_ids"][i, sl] = 1
      out["episode"][i, sl] = e
      kind = "copy" if len(episode) == 2 * start else "lookup"
      out[kind][i, t + start:t + len(episode)] = True
      t, e = t + len(episode), e + 1
  return out
