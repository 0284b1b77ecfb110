"""Exact output laws of the diffusion-LM samplers of decode/diffusion.py, by recursion over states (no sampling).

Legend: L length, V vocabulary (ids >= V and the mask id are never drawn), D hidden.

For tiny models (spec §9: (V + 1)^L states) these are the oracles the samplers are tested against and the exact
analogue of the paper's MAUVE comparison. Logit sources take and return NumPy float64 (one row, no batch):
  base(x_L) -> logits_LV, or (logits_LV, h) when an `adjust` is given; adjust(x_L, h, logits_LV) -> (logits_LV, h).
Positions are ranked by this file's own rules, written with scipy and sharing no code with the sampler's
(`_position_key`: entropy, confidence and margin; lowest key first, ties within tie_tol to the lowest index), so a
wrong ranking line in decode/diffusion.py makes the jitted sampler's law differ from the enumerated one. Temperature
is the only truncation applied here (divide the logits); the sampler's other knobs are off in the exact tests.
"""
import itertools
from typing import Callable

import numpy as np

from scipy import special, stats

from decode.diffusion import ancestral_times

Law = dict[tuple[int, ...], float]


def _banned(logits_LV: np.ndarray, mask_id: int, vocab: int, temperature: float) -> np.ndarray:
  logits = np.asarray(logits_LV, np.float64).copy()
  logits[:, vocab:] = -np.inf
  logits[:, mask_id] = -np.inf
  return special.log_softmax(logits / temperature, axis=-1)


def _position_key(logp_LV: np.ndarray, rule: str) -> np.ndarray:
  """[L]: the reveal order's key per position, lowest first: the entropy of the position's marginal (the most
  certain first), minus its top probability (the most confident first), or minus the gap between its two top
  probabilities (the widest margin first)."""
  p = np.exp(logp_LV)
  if rule == "entropy":
    return stats.entropy(p, axis=-1)
  top2 = np.sort(p, axis=-1)[:, -2:]
  if rule == "confidence":
    return -top2[:, 1]
  if rule == "margin":
    return top2[:, 0] - top2[:, 1]
  raise ValueError(f"rule {rule!r}: the exact laws know entropy, confidence, margin and random")


def _lowest(key_L: np.ndarray, eligible_L: np.ndarray, tie_tol: float) -> int:
  """The eligible position of lowest key (keys within tie_tol of it tie; ties go to the lowest index)."""
  best = min(key_L[j] for j in np.flatnonzero(eligible_L))
  return min(j for j in np.flatnonzero(eligible_L) if key_L[j] <= best + tie_tol)


def _ranked_choices(logp_LV, eligible_L, k, rule, tie_tol, threshold=None):
  """[(probability, chosen positions)] of one call's position choice."""
  if rule == "random":    # k positions uniformly without replacement: enumerate ordered picks
    out = []
    idx = np.flatnonzero(eligible_L)
    n = min(k, len(idx))
    perms = list(itertools.permutations(idx, n))
    for perm in perms:
      out.append((1.0 / len(perms), frozenset(perm)))
    merged: dict = {}
    for q, s in out:
      merged[s] = merged.get(s, 0.0) + q
    return [(q, tuple(sorted(s))) for s, q in merged.items()]
  key = _position_key(logp_LV, rule)
  left = eligible_L.copy()
  chosen = []
  for _ in range(1 if threshold is not None else k):
    if not left.any():
      break
    j = _lowest(key, left, tie_tol)
    chosen.append(j)
    left[j] = False
  if threshold is not None:
    conf = np.exp(logp_LV).max(-1)
    chosen = sorted(set(chosen) | set(np.flatnonzero(eligible_L & (conf >= threshold)).tolist()))
  return [(1.0, tuple(sorted(chosen)))]


def _branch(x, logp_LV, positions, greedy=False):
  """[(probability, new x)] of drawing every position in `positions` independently from its marginal (its
  most likely token, lowest id on ties, when greedy)."""
  if greedy:
    y = x.copy()
    y[list(positions)] = [int(np.argmax(logp_LV[j])) for j in positions]
    yield 1.0, y
    return
  support = [np.flatnonzero(np.exp(logp_LV[j]) > 0) for j in positions]
  for values in itertools.product(*support):
    p = float(np.prod([np.exp(logp_LV[j, v]) for j, v in zip(positions, values)]))
    y = x.copy()
    y[list(positions)] = values
    yield p, y


def unmask_law(base: Callable, x_L, *, mask_id: int, vocab: int, k: int = 1, rule: str = "entropy",
               threshold: float | None = None, block_len: int | None = None, temperature: float = 1.0,
               tie_tol: float = 1e-12, greedy: bool = False) -> Law:
  """The law of decode.diffusion.unmask_sample from the row x_L (a point mass when greedy: sampler=None)."""
  law: Law = {}

  def rec(x, prob):
    masked = x == mask_id
    if not masked.any():
      law[tuple(x.tolist())] = law.get(tuple(x.tolist()), 0.0) + prob
      return
    logp = _banned(base(x), mask_id, vocab, temperature)
    eligible = masked.copy()
    if block_len is not None:
      pos = np.arange(len(x))
      eligible &= pos // block_len == (pos[masked] // block_len).min()
    for q, chosen in _ranked_choices(logp, eligible, k, rule, tie_tol, threshold):
      for p, y in _branch(x, logp, chosen, greedy):
        rec(y, prob * q * p)

  rec(np.asarray(x_L, np.int64), 1.0)
  return law


def adjust_law(base: Callable, adjust: Callable | None, x_L, *, mask_id: int, vocab: int, k: int,
               rule: str = "entropy", temperature: float = 1.0, tie_tol: float = 1e-12) -> Law:
  """The law of decode.diffusion.adjust_sample; adjust=None is the identity (the parallel sampler), and `base`
  returns (logits, h) when an adjust is given."""
  law: Law = {}

  def rec(x, prob, depth, raw, h):
    masked = x == mask_id
    if not masked.any():
      law[tuple(x.tolist())] = law.get(tuple(x.tolist()), 0.0) + prob
      return
    if depth == 0:
      out = base(x)
      raw, h = out if adjust is not None else (out, None)
    elif adjust is not None:
      raw, h = adjust(x, h, raw)
    raw = np.asarray(raw, np.float64).copy()
    raw[:, vocab:] = -np.inf          # the sampler carries the banned logits to the next ADJUST call
    raw[:, mask_id] = -np.inf
    logp = _banned(raw, mask_id, vocab, temperature)
    for q, chosen in _ranked_choices(logp, masked, 1, rule, tie_tol):
      for p, y in _branch(x, logp, chosen):
        rec(y, prob * q * p, (depth + 1) % k, raw, h)

  rec(np.asarray(x_L, np.int64), 1.0, 0, None, None)
  return law


def ancestral_law(base: Callable, x_L, *, mask_id: int, vocab: int, num_steps: int,
                  temperature: float = 1.0) -> Law:
  """The law of decode.diffusion.ancestral_sample (cached or not: the same law)."""
  t = ancestral_times(num_steps)
  reveal = np.where(t[1:] > 0, (t[:-1] - t[1:]) / np.where(t[:-1] > 0, t[:-1], 1.0), 1.0)
  law: Law = {}

  def rec(x, prob, i):
    masked = np.flatnonzero(x == mask_id)
    if len(masked) == 0 or i == num_steps:
      law[tuple(x.tolist())] = law.get(tuple(x.tolist()), 0.0) + prob
      return
    logp = _banned(base(x), mask_id, vocab, temperature)
    r = float(np.float32(reveal[i]))    # the sampler compares float32 uniforms with a float32 rate
    for n in range(len(masked) + 1):
      for subset in itertools.combinations(masked, n):
        q = r ** n * (1 - r) ** (len(masked) - n)
        if q == 0:
          continue
        for p, y in _branch(x, logp, subset):
          rec(y, prob * q * p, i + 1)

  rec(np.asarray(x_L, np.int64), 1.0, 0)
  return law


def tv(p: Law, q: Law) -> float:
  return 0.5 * sum(abs(p.get(s, 0.0) - q.get(s, 0.0)) for s in set(p) | set(q))


def kl(p: Law, q: Law) -> float:
  """KL(p || q) in nats (inf when q misses p's support)."""
  total = 0.0
  for s, ps in p.items():
    if ps > 0:
      qs = q.get(s, 0.0)
      if qs == 0:
        return float("inf")
      total += ps * np.log(ps / qs)
  return float(total)


def mauve_exact(p: Law, q: Law, c: float = 5.0, n: int = 25) -> float:
  """Exact MAUVE with strings as buckets (spec §7.2, mauve-text's formula): area under the divergence curve of
  the mixtures w p + (1 - w) q on a linear grid of n weights; 1.0 for identical laws (degenerate curve)."""
  keys = sorted(set(p) | set(q))
  P = np.array([p.get(s, 0.0) for s in keys])
  Q = np.array([q.get(s, 0.0) for s in keys])
  if 0.5 * np.abs(P - Q).sum() < 1e-12:
    return 1.0

  def kl_multinomial(a, b):
    if np.any((a != 0) & (b == 0)):
      return np.inf
    i = (a != 0) & (b != 0)
    return float(np.sum(a[i] * np.log(a[i] / b[i])))

  curve = [[0.0, np.inf]]
  for w in np.sort(np.linspace(1e-6, 1 - 1e-6, n)):
    r = w * P + (1 - w) * Q
    curve.append([kl_multinomial(Q, r), kl_multinomial(P, r)])
  curve.append([np.inf, 0.0])
  x, y = np.exp(-c * np.asarray(curve)).T
  i1, i2 = np.argsort(x), np.argsort(y)
  return float(0.5 * (np.trapezoid(y[i1], x[i1]) + np.trapezoid(x[i2], y[i2])))


def copy_fixture(vocab: int = 3, length: int = 4, stay: float = 0.9) -> np.ndarray:
  """Spec §9.1 fixture C: P(x) = 1/V prod_{i>=1} [stay if x_i = x_0 else (1 - stay)/(V - 1)], as a table [V]*L."""
  other = (1 - stay) / (vocab - 1)
  P = np.zeros((vocab,) * length)
  for x in itertools.product(range(vocab), repeat=length):
    P[x] = np.prod([stay if xi == x[0] else other for xi in x[1:]]) / vocab
  return P


def table_conditionals(P: np.ndarray, mask_id: int) -> Callable[[np.ndarray], np.ndarray]:
  """base(x_L) -> logits_LV: the exact conditionals p(x_l | unmasked tokens of x) of a tabular joint P at every
  masked position (log-probabilities; unmasked positions are copied, as SUBS does); width V + 1 (the mask id)."""
  V, L = P.shape[0], P.ndim

  def base(x):
    sel = tuple(slice(None) if x[j] == mask_id else int(x[j]) for j in range(L))
    sub = P[sel]                                  # axes: the masked positions, in order
    masked = [j for j in range(L) if x[j] == mask_id]
    out = np.full((L, max(V, mask_id + 1)), -np.inf)
    for j in range(L):
      if x[j] != mask_id:
        out[j, int(x[j])] = 0.0
    total = sub.sum()
    for a, j in enumerate(masked):
      marg = sub.sum(axis=tuple(b for b in range(len(masked)) if b != a)) / total
      with np.errstate(divide="ignore"):
        out[j, :V] = np.log(marg)
    return out
  return base


def table_law(P: np.ndarray, x_L, mask_id: int) -> Law:
  """The joint P conditioned on the unmasked tokens of x_L."""
  L = P.ndim
  law: Law = {}
  for x in itertools.product(range(P.shape[0]), repeat=L):
    if all(x_L[j] == mask_id or x_L[j] == x[j] for j in range(L)) and P[x] > 0:
      law[x] = float(P[x])
  z = sum(law.values())
  return {s: v / z for s, v in law.items()}
