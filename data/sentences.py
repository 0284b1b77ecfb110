"""Finite sentence languages with exact next-token oracles (the AriEL spec's fixtures, ariel.md §5.1 and §6.1).

A `FiniteLanguage` lists every sentence (token ids ending with EOS) with its probability, so membership
(grammaticality), exact sentence probabilities and the exact next-token law p(. | prefix) are all enumerable.
An `OracleLM` is the NumPy next-token function AriEL codes around: `probs(prefixes_BT) -> [B, V]`, where each
prefix starts with BOS. Two languages:

  house_questions  the fixture grammar (data/grammar.py): 8,624 sentences of 5-10 words + EOS; sentence
                   probabilities either uniform over the productions (`weights="rules"`, each alternative of a rule
                   equally likely, the spec's oracle) or uniform over the sentences (`weights="sentences"`)
  prefix_tree      the spec's random prefix-tree LM: V = 1 + words ids, EOS = id 0; at each prefix p ~ Dirichlet(0.5)
                   over EOS and the words, each word zeroed with probability 0.4, renormalised; EOS forbidden before
                   `min_len` words and forced once a sentence has `maxlen` words (so at most maxlen + 1 tokens
                   with EOS). Every draw is a pure function of (seed, prefix), so the tree is enumerable when small
                   and can be sampled lazily when not (the spec's A5 fixture: min_len 30, maxlen 40)

Legend: B batch, T prefix length, V vocabulary.
"""
import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np

from data.grammar import GRAMMAR, grammar_words


@dataclasses.dataclass(frozen=True)
class OracleLM:
  """A NumPy next-token LM over `vocab_size` ids: `probs(prefixes_BT)` rows start with `bos`. `calls` counts the
  batched calls made (the AriEL tests check one call per position)."""
  vocab_size: int
  bos: int
  eos: int
  next_probs: Callable[[tuple[int, ...]], np.ndarray]   # prefix without BOS -> [V]
  calls: list = dataclasses.field(default_factory=lambda: [0], compare=False)

  def probs(self, prefixes_BT: np.ndarray) -> np.ndarray:
    self.calls[0] += 1
    prefixes_BT = np.asarray(prefixes_BT)
    if prefixes_BT.ndim != 2 or not np.all(prefixes_BT[:, 0] == self.bos):
      raise ValueError(f"OracleLM.probs takes prefixes [B, T] that start with BOS={self.bos}")
    return np.stack([self.next_probs(tuple(int(x) for x in row[1:])) for row in prefixes_BT])

  def sample(self, rng: np.random.Generator, n: int, max_tokens: int = 1000) -> list[tuple[int, ...]]:
    """n ancestral samples (each ending with EOS)."""
    out = []
    for _ in range(n):
      s: list[int] = []
      while not s or s[-1] != self.eos:
        if len(s) >= max_tokens:
          raise ValueError(f"an ancestral sample reached {max_tokens} tokens without EOS")
        p = self.next_probs(tuple(s))
        s.append(int(rng.choice(self.vocab_size, p=p / p.sum())))
      out.append(tuple(s))
    return out


@dataclasses.dataclass(frozen=True)
class FiniteLanguage:
  """Every sentence (a tuple of ids ending with `eos`) and its probability (summing to 1)."""
  sentences: tuple[tuple[int, ...], ...]
  probs: np.ndarray
  vocab_size: int
  bos: int
  eos: int

  @functools.cached_property
  def index(self) -> dict[tuple[int, ...], int]:
    return {s: i for i, s in enumerate(self.sentences)}

  def __contains__(self, sentence: Sequence[int]) -> bool:
    return tuple(int(x) for x in sentence) in self.index

  @functools.cached_property
  def _next(self) -> dict[tuple[int, ...], np.ndarray]:
    table: dict[tuple[int, ...], np.ndarray] = {}
    for s, p in zip(self.sentences, self.probs):
      for t in range(len(s)):
        row = table.setdefault(s[:t], np.zeros(self.vocab_size))
        row[s[t]] += p
    return {k: v / v.sum() for k, v in table.items()}

  def next_probs(self, prefix: tuple[int, ...]) -> np.ndarray:
    """The exact p(. | prefix); a prefix outside the language gets all mass on EOS (never reached by decoding,
    which only follows tokens of nonzero probability)."""
    p = self._next.get(prefix)
    if p is None:
      p = np.zeros(self.vocab_size)
      p[self.eos] = 1.0
    return p

  def sample_metrics(self, samples: Sequence[Sequence[int] | None], held_out: Sequence[int] = ()) -> dict:
    """Fractions of the N samples (sentences ending with EOS, None for one that never ended): valid (in the
    language), unique (distinct, invalid ones included), valid_unique (distinct valid), novel (distinct valid
    sentences among `held_out`, the indices of sentences never trained on)."""
    n = max(len(samples), 1)
    sents = [None if s is None else tuple(int(x) for x in s) for s in samples]
    valid = [s for s in sents if s is not None and s in self.index]
    held = {self.sentences[i] for i in held_out}
    return {"valid": len(valid) / n, "unique": len(set(sents)) / n, "valid_unique": len(set(valid)) / n,
            "novel": len(set(valid) & held) / n}

  def oracle(self) -> OracleLM:
    return OracleLM(self.vocab_size, self.bos, self.eos, self.next_probs)

  def padded(self, width: int | None = None, pad: int | None = None) -> np.ndarray:
    """All sentences as int32 rows [N, width], padded after EOS with `pad` (default EOS)."""
    width = width or max(map(len, self.sentences))
    out = np.full((len(self.sentences), width), self.eos if pad is None else pad, np.int32)
    for i, s in enumerate(self.sentences):
      out[i, :len(s)] = s
    return out


def _expansions(symbol: str, rule_weight: bool) -> list[tuple[tuple[str, ...], float]]:
  """Every terminal string a grammar symbol derives, with its probability under uniform productions."""
  if symbol.startswith("'"):
    return [((symbol[1:-1],), 1.0)]
  alts = GRAMMAR[symbol]
  out = []
  for alt in alts:
    parts = [((), 1.0 / len(alts) if rule_weight else 1.0)]
    for s in alt:
      parts = [(a + b, p * q) for a, p in parts for b, q in _expansions(s, rule_weight)]
    out.extend(parts)
  return out


@functools.cache
def house_questions(weights: str = "rules", first_id: int = 4, bos: int = 1,
                    eos: int = 2) -> FiniteLanguage:
  """The fixture grammar's 8,624 sentences over ids `first_id + word index` (data/grammar.py grammar_words),
  default the symbol vocabulary's layout (PAD 0, BOS = CLS 1, EOS = SEP 2, MASK 3, 38 words from 4: 42 ids)."""
  if weights not in ("rules", "sentences"):
    raise ValueError(f"house_questions weights={weights!r}: use 'rules' or 'sentences'")
  index = {w: first_id + i for i, w in enumerate(grammar_words())}
  exp = _expansions("S", True)
  sentences = tuple(tuple(index[w] for w in words) + (eos,) for words, _ in exp)
  p = np.array([q for _, q in exp]) if weights == "rules" else np.ones(len(exp))
  return FiniteLanguage(sentences, p / p.sum(), first_id + len(index), bos, eos)


def split(language: FiniteLanguage, held_out: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Sentence indices (train, held_out): a fixed random `held_out` fraction is held out (ariel.md §5.1)."""
  perm = np.random.default_rng([seed, 29]).permutation(len(language.sentences))
  k = int(round(held_out * len(perm)))
  return np.sort(perm[k:]), np.sort(perm[:k])


def prefix_tree_probs(seed: int, words: int = 5, min_len: int = 2, maxlen: int = 6, alpha: float = 0.5,
                      zero_prob: float = 0.4) -> Callable[[tuple[int, ...]], np.ndarray]:
  """The random prefix-tree LM's p(. | prefix) over V = 1 + words ids (EOS = 0), a pure function of (seed, prefix)."""
  V = words + 1

  @functools.lru_cache(maxsize=1 << 20)
  def probs(prefix: tuple[int, ...]) -> np.ndarray:
    n = len(prefix)
    p = np.zeros(V)
    if n >= maxlen:
      p[0] = 1.0
      return p
    r = np.random.default_rng([seed, n, *prefix])
    p = r.dirichlet(np.full(V, alpha))
    keep = r.random(words) >= zero_prob
    if n < min_len:
      p[0] = 0.0
      if not keep.any():   # a word must remain where EOS is forbidden
        keep[r.integers(words)] = True
    p[1:] *= keep
    if p.sum() <= 0:   # every allowed entry drew 0 in floating point: fall back to the kept words uniformly
      p = np.concatenate([[float(n >= min_len)], keep.astype(float)])
    return p / p.sum()
  return probs


def prefix_tree(seed: int, words: int = 5, min_len: int = 2, maxlen: int = 6) -> FiniteLanguage:
  """The random prefix-tree LM's whole finite language, enumerated depth first (BOS = -1: it has no id)."""
  probs = prefix_tree_probs(seed, words, min_len, maxlen)
  sentences, masses = [], []

  def walk(prefix: tuple[int, ...], mass: float) -> None:
    p = probs(prefix)
    for v in np.flatnonzero(p):
      if v == 0:
        sentences.append(prefix + (0,))
        masses.append(mass * p[0])
      else:
        walk(prefix + (int(v),), mass * p[v])
  walk((), 1.0)
  return FiniteLanguage(tuple(sentences), np.asarray(masses), words + 1, -1, 0)


def prefix_tree_oracle(seed: int, words: int = 5, min_len: int = 2, maxlen: int = 6) -> OracleLM:
  """The prefix-tree LM as an oracle without enumeration (BOS = -1)."""
  return OracleLM(words + 1, -1, 0, prefix_tree_probs(seed, words, min_len, maxlen))
