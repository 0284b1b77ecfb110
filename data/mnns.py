"""Minimum non-negative sum (MNNS), the CoT2 task (Gozeten et al. 2025 §1): L digits, choose a sign for each so
that the final sum is the smallest non-negative one. Vocabulary, exhaustive instances, the group-disjoint split,
the per-method sequence formats and the CSFT target distributions (the family's data source is
data/sources.py MnnsSource).

The layout (89 ids for L = 4, digits 1-9): 0 <PAD>, 1 <BOS>, 2 <EOS>, 3 "->", 4 "+", 5 "-", 6-15 D0..D9, then
S-m..Sm with m = L * max digit (S0 = 16 + m). Ids 0-2 coincide with data/vocab.py's PAD, CLS and SEP; there is no
mask token.
Legend: N instances, L digits, V vocabulary, M beams.
"""
import dataclasses
import functools
import itertools
import random
from typing import Sequence

import numpy as np

from data.vocab import Vocabulary

PAD, BOS, EOS, ARROW, PLUS, MINUS = range(6)
FIRST_DIGIT = 6
FIRST_SUM = 16
FORMATS = ("discrete", "csft")
TARGETS = ("uniform", "beam")


class MnnsVocabulary(Vocabulary):
  """The MNNS ids above; `encode` reads whitespace-separated token names ("<BOS> D2 D7 -> S2")."""
  mask_id = None   # no mask token: id 3 is "->"

  def __init__(self, max_sum: int = 36):
    self.max_sum = max_sum
    self.tokens = (["<PAD>", "<BOS>", "<EOS>", "->", "+", "-"] + [f"D{i}" for i in range(10)]
                   + [f"S{s}" for s in range(-max_sum, max_sum + 1)])
    self._ids = {t: i for i, t in enumerate(self.tokens)}

  @property
  def size(self) -> int:
    return len(self.tokens)

  @property
  def first_normal_id(self) -> int:
    return ARROW

  def sum_id(self, s):
    return FIRST_SUM + self.max_sum + np.asarray(s)

  def encode(self, text: str) -> list[int]:
    out = []
    for t in text.split():
      if t not in self._ids:
        raise ValueError(f"{t!r} is not an MNNS token: use <BOS>, <EOS>, ->, +, -, D0..D9 or "
                         f"S-{self.max_sum}..S{self.max_sum}")
      out.append(self._ids[t])
    return out

  def decode(self, ids: Sequence[int]) -> str:
    return " ".join(self.tokens[i] for i in ids if i != PAD)


@dataclasses.dataclass(frozen=True)
class Mnns:
  """All `num_digits`-tuples of digits lo..hi (product order), their answers and traces, and the split."""
  num_digits: int = 4
  lo: int = 1
  hi: int = 9

  def __post_init__(self):
    if not 1 <= self.lo <= self.hi <= 9 or self.num_digits < 1:
      raise ValueError(f"MNNS digits {self.lo}-{self.hi} with L={self.num_digits}: digits must lie in 1..9 "
                       "(positive, so every instance has an answer) and L >= 1; fix data.corpus=mnns:L:lo-hi")

  @property
  def vocab(self) -> MnnsVocabulary:
    return MnnsVocabulary(self.num_digits * self.hi)

  @functools.cached_property
  def digits_NL(self) -> np.ndarray:
    return np.array(list(itertools.product(range(self.lo, self.hi + 1), repeat=self.num_digits)), np.int64)

  @functools.cached_property
  def signs_PL(self) -> np.ndarray:
    """The 2^L sign patterns in itertools.product(('+', '-')) order: '+' before '-'."""
    return np.array(list(itertools.product((1, -1), repeat=self.num_digits)), np.int64)

  @functools.cached_property
  def partial_sums_NPL(self) -> np.ndarray:
    return np.cumsum(self.digits_NL[:, None, :] * self.signs_PL[None], axis=-1)

  @functools.cached_property
  def answers_N(self) -> np.ndarray:
    final = self.partial_sums_NPL[..., -1]
    return np.where(final >= 0, final, np.iinfo(np.int64).max).min(axis=1)

  @functools.cached_property
  def traces_NL(self) -> np.ndarray:
    """s_1..s_L of the first sign pattern (product order) reaching the answer: the discrete chain of thought."""
    final = self.partial_sums_NPL[..., -1]
    first = np.argmax(final == self.answers_N[:, None], axis=1)
    return self.partial_sums_NPL[np.arange(len(first)), first]

  def split(self, seed: int, train_ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) instance indices: groups of equal sorted digit multisets, in order of first appearance,
    shuffled by Python's random.Random(seed); the first int(0.8 * groups) go to training. No permutation of a
    validation multiset is ever trained on. seed 42, L = 4, digits 1-9: 5253 / 1308 (spec §1.3)."""
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(self.digits_NL):
      groups.setdefault(tuple(sorted(row.tolist())), []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    cut = int(train_ratio * len(keys))
    take = lambda ks: np.array([i for k in ks for i in groups[k]], np.int64)
    return take(keys[:cut]), take(keys[cut:])

  # Sequence formats (spec §1.5).
  def discrete_lines(self) -> np.ndarray:
    """[N, 2L+3] `<BOS> D.. -> S(s_1) .. S(s_L) <EOS>`."""
    v, n = self.vocab, len(self.digits_NL)
    col = lambda x: np.full((n, 1), x, np.int64)
    return np.concatenate([col(BOS), FIRST_DIGIT + self.digits_NL, col(ARROW), v.sum_id(self.traces_NL),
                           col(EOS)], axis=1).astype(np.int32)

  def prompts(self, arrow: bool = False) -> np.ndarray:
    """[N, L+1] `<BOS> D..` (CSFT and GRPO), or [N, L+2] with the "->" of the discrete evaluation prompt."""
    n = len(self.digits_NL)
    parts = [np.full((n, 1), BOS), FIRST_DIGIT + self.digits_NL] + ([np.full((n, 1), ARROW)] if arrow else [])
    return np.concatenate(parts, axis=1).astype(np.int32)

  def answer_ids(self) -> np.ndarray:
    return self.vocab.sum_id(self.answers_N).astype(np.int32)

  # CSFT targets (spec §4.1).
  def uniform_targets(self) -> np.ndarray:
    """[N, L, V] float32: at step t the empirical distribution of s_{t+1} over all 2^L sign paths (= mass
    1/2^{t+1} per path of the first t+1 digits, duplicates accumulating)."""
    return self._histograms(self.partial_sums_NPL, np.ones(self.partial_sums_NPL.shape[:2], bool))

  def beam_targets(self, beams: int) -> np.ndarray:
    """[N, L, V]: the `beams` best paths with final >= 0, sorted as the official code sorts them, by (final, sign
    tuple of +-1 integers), so among equal finals '-' sorts before '+' (the reverse of the product order that picks
    the discrete trace); at each step the normalised counts of their partial sums. beams = 1 is one-hot on one
    optimal path, beams = 2^L the empirical law of all non-negative-final paths (not `uniform_targets`)."""
    if beams < 1:
      raise ValueError(f"objective.beams={beams} must be >= 1")
    final = self.partial_sums_NPL[..., -1]
    # As +-1 tuples, -1 < 1: ascending sign tuples are descending product-order indices.
    P = final.shape[1]
    key = np.where(final >= 0, final, 10 ** 6) * P + (P - 1 - np.arange(P))[None]
    order = np.argsort(key, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None].repeat(len(order), 0), axis=1)
    keep = (rank < beams) & (final >= 0)
    return self._histograms(self.partial_sums_NPL, keep)

  def _histograms(self, sums_NPL: np.ndarray, keep_NP: np.ndarray) -> np.ndarray:
    n, _, L = sums_NPL.shape
    V = self.vocab.size
    ids = self.vocab.sum_id(sums_NPL)                                       # [N, P, L]
    out = np.zeros((n, L, V), np.float64)
    rows = np.broadcast_to(np.arange(n)[:, None, None], ids.shape)
    steps = np.broadcast_to(np.arange(L)[None, None, :], ids.shape)
    np.add.at(out, (rows, steps, ids), keep_NP[..., None].astype(np.float64))
    return (out / out.sum(-1, keepdims=True)).astype(np.float32)


def parse(corpus: str) -> Mnns:
  """data.corpus = "mnns" (L = 4, digits 1-9) or "mnns:L:lo-hi"."""
  parts = corpus.split(":")
  if parts[0] != "mnns" or len(parts) not in (1, 3):
    raise ValueError(f"data.corpus={corpus!r}: use 'mnns' or 'mnns:L:lo-hi' (e.g. mnns:4:1-9)")
  if len(parts) == 1:
    return Mnns()
  try:
    lo, hi = (int(x) for x in parts[2].split("-"))
    return Mnns(int(parts[1]), lo, hi)
  except ValueError as e:
    if "MNNS" in str(e):
      raise
    raise ValueError(f"data.corpus={corpus!r}: use 'mnns:L:lo-hi' with integers, e.g. mnns:4:1-9") from None


@dataclasses.dataclass(frozen=True)
class MnnsRows:
  """The arrays of one split in one format. discrete: tokens [n, 2L+3]; csft: prompt [n, L+1] and targets
  [n, L, V]; both: answer [n] (the gold S id) and valid [n] (1; 0 marks evaluation padding)."""
  arrays: dict

  def __len__(self):
    return len(self.arrays["answer"])

  def row(self, i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in self.arrays.items()}


def rows(task: Mnns, fmt: str, indices: np.ndarray, targets: str = "uniform", beams: int = 16) -> MnnsRows:
  if fmt not in FORMATS:
    raise ValueError(f"MNNS format {fmt!r}: use one of {list(FORMATS)}")
  out = {"answer": task.answer_ids()[indices], "valid": np.ones(len(indices), np.float32)}
  if fmt == "discrete":
    out["tokens"] = task.discrete_lines()[indices]
  else:
    if targets not in TARGETS:
      raise ValueError(f"objective.targets={targets!r}: use one of {list(TARGETS)}")
    t = task.uniform_targets() if targets == "uniform" else task.beam_targets(beams)
    out["prompt"], out["targets"] = task.prompts()[indices], t[indices]
  return MnnsRows(out)


@functools.lru_cache(maxsize=8)
def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of training epoch `epoch`: a NumPy permutation seeded by (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(n)
