"""AriEL volume coding (ariel.md §1): arithmetic coding of a sentence into an axis-aligned box of [0, 1)^D whose
volume is the sentence's probability, with token t splitting dimension t mod D (kd-tree cycling); decoding a point
follows the LM down the boxes that contain it, so a uniform point decodes to an ancestral sample of the LM.

Batched and jitted: a `lax.while_loop` over token positions makes ONE batched LM call per position for all rows
(the causal LM through its KV cache; a NumPy oracle through `jax.pure_callback`), stops when every row has passed
its EOS, and carries per-row (lo, hi) boxes. Encoding includes the EOS token; decoding stops at it.

Precision (ariel.md §3, measured by tests/families/test_ariel.py and bench/ariel_roundtrip.py): one dimension's
side is the product of the probabilities of the tokens it coded, so float32 with D = 1 collapses after 20-30 tokens
at p ~ 0.3.
The coder therefore runs in float64 by default, with `jax_enable_x64` switched on only inside encode/decode
(`jax.enable_x64`, a scoped context: the rest of the program stays 32-bit); float32 is an option and is exact on
the tested lengths for D >= 4. The LM itself computes in its own dtype; its probabilities are cast to the coder's
dtype before the cumulative sums, and encoder and decoder derive every interval bound by the same arithmetic
(`_bounds`), so a point inside a box decodes to that box's sentence exactly.

Never a silent loss: a sentence whose box collapses at the coder's precision (a side of zero width, or a midpoint
that rounds onto the box's upper edge) cannot be decoded from its point. `encode` checks every box
(`representable`: lo <= z < hi in every dimension, which is exactly the condition for the decoder, running the same
interval arithmetic, to retrace the sentence) and warns with the count; `representable` gives the flag per
sentence. bench/ariel_roundtrip.py prints `flagged` and `lost_unflagged` (0 at every precision and d measured).

Zero-probability tokens own empty intervals (bounds equal), which `searchsorted(side='right')` never selects, so
they are never decoded; points are clipped into [0, 1) (the largest float below 1) before decoding.

The LM is a `CodingLM`: `init(params, batch, max_tokens) -> state` and `step(params, state, prefix_BL, t) ->
(probs_BV, state)` giving p(. | prefix[:, :t + 1]) (prefix[:, 0] is BOS). `causal_lm(module)` wraps our causal LM
(and so any GPT-2 checkpoint loaded through models.hf.load_gpt2); `oracle(lm)` wraps a NumPy `data.sentences.OracleLM`.
Legend: B batch, D latent dimensions, L token positions, V vocabulary.
"""
import contextlib
import dataclasses
import functools
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class CodingLM:
  """A next-token LM as AriEL codes around it (see the module docstring)."""
  vocab_size: int
  bos: int
  eos: int
  init: Callable[[Any, int, int], Any]
  step: Callable[[Any, Any, jax.Array, jax.Array], tuple[jax.Array, Any]]


@functools.cache
def causal_lm(module, *, bos: int, eos: int) -> CodingLM:
  """Our causal LM (models/causal_lm.CausalLm with learned embeddings): one cached single-token step per position."""
  def init(params, batch, max_tokens):
    del params
    return module.init_cache(batch, max_tokens)

  def step(params, cache, prefix_BL, t):
    tok_B1 = jax.lax.dynamic_slice_in_dim(prefix_BL, t, 1, axis=1).astype(jnp.int32)
    logits_B1V, cache = module.apply({"params": params}, tok_B1, cache=cache)
    return jax.nn.softmax(logits_B1V[:, 0].astype(jnp.float32), axis=-1), cache
  return CodingLM(module.cfg.vocab_size, bos, eos, init, step)


@functools.cache
def oracle(lm) -> CodingLM:
  """A NumPy oracle (data/sentences.py OracleLM) called from inside the jitted loop, once per position."""
  def host(prefix_BL, t, *, x64):
    p = lm.probs(np.asarray(prefix_BL)[:, :int(t) + 1])
    if not x64:
      return p.astype(np.float32)
    # float64 travels as its two uint32 halves: the callback's result is canonicalised on a thread outside the
    # x64 scope, which would round a float64 array to float32
    p = np.ascontiguousarray(p, np.float64)
    return p.view(np.uint32).reshape(*p.shape, 2)

  def step(params, state, prefix_BL, t):
    del params
    x64 = bool(jax.config.jax_enable_x64)   # the coder's scope, read at trace time
    B, V = prefix_BL.shape[0], lm.vocab_size
    out = jax.ShapeDtypeStruct((B, V, 2), jnp.uint32) if x64 else jax.ShapeDtypeStruct((B, V), jnp.float32)
    probs = jax.pure_callback(functools.partial(host, x64=x64), out, prefix_BL, t)
    return (jax.lax.bitcast_convert_type(probs, jnp.float64) if x64 else probs), state
  return CodingLM(lm.vocab_size, lm.bos, lm.eos, lambda params, batch, max_tokens: (), step)


def _precision(dtype) -> contextlib.AbstractContextManager:
  dtype = np.dtype(dtype)
  if dtype not in (np.float32, np.float64):
    raise ValueError(f"AriEL coder dtype={dtype}: use float32 or float64")
  return jax.enable_x64(dtype == np.float64)


def _bounds(lo_B, hi_B, probs_BV):
  """The sub-interval [low_v, up_v) of every token inside [lo, hi): up = lo + (hi - lo) * cdf, with the cdf
  normalised so its last entry is exactly 1 and that bound set to hi itself (no rounding gap at the top).

  The bounds are then clipped into [lo, hi] and made monotone by a running maximum. Without it, equal cdf entries
  (a zero-probability token between them) could give bounds an ulp apart: XLA:CPU fused `up` into each consumer
  and contracted one copy to an FMA and not the other (seen at LLVM -O0), so one box's top missed its neighbour's
  bottom and the boxes overlapped (tests/families/test_ariel.py tiling test). The running maximum is a scan, which XLA
  computes once for both consumers, and monotone whatever the rounding."""
  cdf = jnp.cumsum(probs_BV.astype(lo_B.dtype), axis=-1)
  cdf = cdf / cdf[:, -1:]
  up = jnp.clip(lo_B[:, None] + (hi_B - lo_B)[:, None] * cdf, lo_B[:, None], hi_B[:, None])
  up = jax.lax.cummax(jnp.where(cdf >= 1, hi_B[:, None], up), axis=1)
  low = jnp.concatenate([lo_B[:, None], up[:, :-1]], axis=-1)
  return low, up


def _take(x_BV, v_B):
  return jnp.take_along_axis(x_BV, v_B[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnames=("lm", "d", "dtype"))
def _encode(lm: CodingLM, params, tokens_BL, *, d: int, dtype):
  B, L = tokens_BL.shape
  prefix = jnp.concatenate([jnp.full((B, 1), lm.bos, tokens_BL.dtype), tokens_BL], axis=1)
  lo, hi = jnp.zeros((B, d), dtype), jnp.ones((B, d), dtype)

  def cond(s):
    t, _, _, done, _ = s
    return (t < L) & ~jnp.all(done)

  def body(s):
    t, lo, hi, done, state = s
    probs, state = lm.step(params, state, prefix, t)
    j = t % d
    low, up = _bounds(lo[:, j], hi[:, j], probs)
    tok = tokens_BL[:, t]
    lo = lo.at[:, j].set(jnp.where(done, lo[:, j], _take(low, tok)))
    hi = hi.at[:, j].set(jnp.where(done, hi[:, j], _take(up, tok)))
    return t + 1, lo, hi, done | (tok == lm.eos), state

  init = (jnp.int32(0), lo, hi, jnp.zeros((B,), bool), lm.init(params, B, L + 1))
  _, lo, hi, _, _ = jax.lax.while_loop(cond, body, init)
  return (lo + hi) / 2, lo, hi


@functools.partial(jax.jit, static_argnames=("lm", "maxlen", "pad", "dtype"))
def _decode(lm: CodingLM, params, points_BD, *, maxlen: int, pad: int, dtype):
  B, d = points_BD.shape
  z = jnp.clip(points_BD.astype(dtype), 0, jnp.nextafter(jnp.asarray(1, dtype), jnp.asarray(0, dtype)))
  prefix = jnp.full((B, maxlen + 1), pad, jnp.int32).at[:, 0].set(lm.bos)
  lo, hi = jnp.zeros((B, d), dtype), jnp.ones((B, d), dtype)
  last = jnp.arange(lm.vocab_size)

  def cond(s):
    t, _, _, _, done, _ = s
    return (t < maxlen) & ~jnp.all(done)

  def body(s):
    t, prefix, lo, hi, done, state = s
    probs, state = lm.step(params, state, prefix, t)
    j = t % d
    low, up = _bounds(lo[:, j], hi[:, j], probs)
    v = jnp.sum(up <= z[:, j, None], axis=-1)                  # searchsorted(up, z, side='right')
    top = jnp.max(jnp.where(probs > 0, last, 0), axis=-1)      # never past the last token with mass
    v = jnp.minimum(v, top).astype(jnp.int32)
    lo = lo.at[:, j].set(jnp.where(done, lo[:, j], _take(low, v)))
    hi = hi.at[:, j].set(jnp.where(done, hi[:, j], _take(up, v)))
    prefix = prefix.at[:, t + 1].set(jnp.where(done, pad, v))
    return t + 1, prefix, lo, hi, done | (v == lm.eos), state

  init = (jnp.int32(0), prefix, lo, hi, jnp.zeros((B,), bool), lm.init(params, B, maxlen + 1))
  _, prefix, _, _, _, _ = jax.lax.while_loop(cond, body, init)
  return prefix[:, 1:]


def representable(z, lo, hi) -> np.ndarray:
  """[B] bool: whether each sentence's point lies inside its box in every dimension (lo <= z < hi), i.e. whether
  decoding the point returns the sentence at this precision. False: the box collapsed (raise d or use float64)."""
  z, lo, hi = np.asarray(z), np.asarray(lo), np.asarray(hi)
  return ((lo <= z) & (z < hi)).all(axis=-1)


def encode(lm: CodingLM, params, tokens, d: int, *, dtype=np.float64):
  """Sentences [B, L] (each ending with lm.eos; anything after it is ignored) -> (points [B, D], (lo, hi) boxes
  [B, D]) as NumPy arrays of `dtype`; the box volume prod(hi - lo) is the sentence's LM probability. Sentences
  this precision cannot represent (`representable`) are reported in one warning line."""
  tokens = np.asarray(tokens)
  if tokens.ndim != 2:
    raise ValueError(f"AriEL encode takes sentences [B, L]; got shape {tokens.shape}")
  if d < 1:
    raise ValueError(f"AriEL latent dimension d={d} must be >= 1")
  missing = np.flatnonzero(~(tokens == lm.eos).any(axis=1))
  if missing.size:
    raise ValueError(f"AriEL encode: row {int(missing[0])} has no EOS (id {lm.eos}); end every sentence with EOS "
                     "(it is coded too, which is what makes the boxes tile the cube)")
  with _precision(dtype):
    z, lo, hi = _encode(lm, params, jnp.asarray(tokens, jnp.int32), d=int(d), dtype=np.dtype(dtype))
    z, lo, hi = np.asarray(z), np.asarray(lo), np.asarray(hi)
  lost = np.flatnonzero(~representable(z, lo, hi))
  if lost.size:
    warnings.warn(f"AriEL encode: {lost.size} of {len(z)} sentences (rows {lost[:5].tolist()}"
                  f"{', ...' if lost.size > 5 else ''}) do not fit {np.dtype(dtype).name} with d={d}: their boxes "
                  "collapse and their points decode to other sentences; raise d or use dtype=float64 "
                  "(ariel.representable(z, lo, hi) flags them)", RuntimeWarning, stacklevel=2)
  return z, (lo, hi)


def decode(lm: CodingLM, params, points, maxlen: int, *, pad: int | None = None, dtype=np.float64) -> np.ndarray:
  """Points [B, D] (D is the latent dimension) -> tokens [B, maxlen], `pad` (default EOS) after each row's EOS; a
  row without EOS ran out of `maxlen` tokens."""
  points = np.asarray(points)
  if points.ndim != 2:
    raise ValueError(f"AriEL decode takes points [B, D]; got shape {points.shape}")
  with _precision(dtype):
    out = _decode(lm, params, jnp.asarray(points, np.dtype(dtype)), maxlen=int(maxlen),
                  pad=int(lm.eos if pad is None else pad), dtype=np.dtype(dtype))
    return np.asarray(out)


def sentences(tokens_BL: np.ndarray, eos: int) -> list[tuple[int, ...] | None]:
  """Each decoded row up to and including its EOS, or None where it has none."""
  out = []
  for row in np.asarray(tokens_BL):
    hit = np.flatnonzero(row == eos)
    out.append(tuple(int(x) for x in row[:hit[0] + 1]) if hit.size else None)
  return out


def lm_evaluation(module, params, *, corpus: str, language_size: int, bos: int, eos: int, seq_len: int, n: int,
                  seed: int, d: int = 16) -> dict:
  """AriEL around a trained causal LM on a finite synthetic language (the causal LM's eval.analyses "ariel"):
  held-out sentences coded to d-dimensional points and decoded back (exact reconstruction rate), and n uniform
  points decoded to sentences (valid / unique / held-out rates). d = 16 as in all of the method's experiments."""
  from data.synthetic import parse
  language, _, held = parse(corpus, language_size).finite
  lm = causal_lm(module, bos=bos, eos=eos)
  maxlen = seq_len - 1
  sents = language.padded(maxlen)[held[:n]]
  z, _ = encode(lm, params, sents, d)
  points = np.random.default_rng(seed + 6).random((n, d))
  samples = sentences(decode(lm, params, points, maxlen), language.eos)
  return {"d": d, "reconstruction_held_out": float((decode(lm, params, z, maxlen) == sents).all(axis=1).mean()),
          "samples": language.sample_metrics(samples, held)}
