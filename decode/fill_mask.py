"""Mask filling for masked LMs: fill the most confident [MASK] first, one per model call, until none is left.

The text-level entry points compile once per model and shape: the jitted program is built once per (apply_fn,
settings) and takes the parameters and the number of masks as arguments, so a second call traces and compiles
nothing and the weights are never baked into the program as constants."""
import functools
from functools import partial
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data.sources import framed_rows, pad_rows
from data.vocab import Vocabulary
from models.family import as_value


def _fill_one(logits_BTV: jax.Array, toks_BT: jax.Array, mask_id: int, low: int, high: int) -> jax.Array:
  """Fills, in each row, the [MASK] whose best allowed id is the most confident."""
  rows = jnp.arange(toks_BT.shape[0])
  ids = jnp.arange(logits_BTV.shape[-1])
  logits_BTV = jnp.where((ids >= low) & (ids < high), logits_BTV, -jnp.inf)
  pred_BT = jnp.argmax(logits_BTV, -1).astype(toks_BT.dtype)
  conf_BT = jnp.max(jax.nn.log_softmax(logits_BTV, -1), -1)
  masked_BT = toks_BT == mask_id
  pos_B = jnp.argmax(jnp.where(masked_BT, conf_BT, -jnp.inf), axis=1)
  has_mask_B = masked_BT.any(axis=1)
  new_B = jnp.where(has_mask_B, pred_BT[rows, pos_B], toks_BT[rows, pos_B])
  return toks_BT.at[rows, pos_B].set(new_B)


def fill_masks(apply_fn: Callable[..., jax.Array], params: Any, tokens_BT: jax.Array, segment_ids_BT: jax.Array,
               num_iters: int | jax.Array, *, mask_id: int, low: int, high: int, top_k: int = 0,
               special: tuple[int, ...] = ()):
  """Iterative confidence-ordered greedy filling (`num_iters` model calls, a traced count allowed); only ids in
  [low, high) can be predicted.

  Each iteration re-encodes the sequence with the masks filled so far (bidirectional models condition on them).
  With `top_k`, also returns the first pass's top-k (probabilities [B, T, k], ids [B, T, k]) at every position:
  softmax over the whole output row, candidates in [low, high) minus `special` (what `mask_candidates` reports).
  Jit it with the keyword arguments bound (see `fill_mask_texts`).
  """
  logits_BTV = apply_fn({"params": params}, tokens_BT, segment_ids_BT).astype(jnp.float32)
  toks_BT = _fill_one(logits_BTV, tokens_BT, mask_id, low, high)

  def body(_, toks_BT):
    logits_BTV = apply_fn({"params": params}, toks_BT, segment_ids_BT).astype(jnp.float32)
    return _fill_one(logits_BTV, toks_BT, mask_id, low, high)

  toks_BT = jax.lax.fori_loop(1, num_iters, body, toks_BT)
  if not top_k:
    return toks_BT
  logp_BTV = jax.nn.log_softmax(logits_BTV, -1)
  ids = jnp.arange(logp_BTV.shape[-1])
  allowed = (ids >= low) & (ids < high) & ~jnp.isin(ids, jnp.asarray(special, jnp.int32))
  logp_BTK, ids_BTK = jax.lax.top_k(jnp.where(allowed, logp_BTV, -jnp.inf), top_k)
  return toks_BT, (jnp.exp(logp_BTK), ids_BTK)


@functools.lru_cache(maxsize=None)
def fill_program(apply_fn: Callable[..., jax.Array], mask_id: int, low: int, high: int, top_k: int,
                 special: tuple[int, ...], out_shardings=None):
  """fill_masks jitted once per model and settings: (params, tokens, segment_ids, num_iters) -> fill_masks."""
  return jax.jit(partial(fill_masks, apply_fn, mask_id=mask_id, low=low, high=high, top_k=top_k, special=special),
                 out_shardings=out_shardings)


Candidates = list[list[tuple[int, float]]]   # per [MASK] of a text: (token id, probability), best first


def fill_mask_texts(apply_fn: Callable[..., jax.Array], params: Any, vocab: Vocabulary,
                    texts: Sequence[str], seq_len: int, mesh: jax.sharding.Mesh | None = None, top_k: int = 0
                    ) -> list[str] | tuple[list[str], list[Candidates]]:
  """Fills every "[MASK]" in each text; texts longer than seq_len tokens (with CLS and SEP) are refused.

  With `top_k`, also returns each mask's top-k candidates from one pass over the text as given, as
  `transformers.pipeline("fill-mask")` reports them: probabilities are the softmax over the model's whole output
  row; candidates are the vocabulary's normal ids (special ids and the rows a model pads its vocabulary with are
  never proposed; the pipeline would list a special token if it ranked there). One compiled call does both.
  With a mesh, inputs and outputs are replicated global arrays, so this also runs with several processes.
  """
  rows = framed_rows(vocab, texts, seq_len)
  tokens, segments = pad_rows(rows, seq_len, vocab.pad_id)
  num_iters = max(int((tokens == vocab.mask_id).sum(1).max()), 1)
  replicated = jax.sharding.NamedSharding(mesh, jax.P()) if mesh is not None else None
  fill = fill_program(as_value(apply_fn), vocab.mask_id, vocab.first_normal_id, vocab.size, top_k,
                      tuple(sorted(set(vocab.special_ids))), replicated)
  if replicated is not None:
    tokens, segments = jax.device_put(tokens, replicated), jax.device_put(segments, replicated)
  out = jax.device_get(fill(params, jnp.asarray(tokens), jnp.asarray(segments), jnp.int32(num_iters)))
  filled, (probs, ids) = (out if top_k else (out, (None, None)))
  filled = np.asarray(filled)
  texts_out = [vocab.decode(filled[i, :len(r)]) for i, r in enumerate(rows)]
  if not top_k:
    return texts_out
  cands = [[[(int(ids[b, t, j]), float(probs[b, t, j])) for j in range(top_k)]
            for t, i in enumerate(r) if i == vocab.mask_id] for b, r in enumerate(rows)]
  return texts_out, cands


def mask_candidates(apply_fn: Callable[..., jax.Array], params: Any, vocab: Vocabulary, texts: Sequence[str],
                    seq_len: int, top_k: int = 5, mesh: jax.sharding.Mesh | None = None) -> list[Candidates]:
  """Each text's [MASK]s' top-k (token id, probability) pairs (see `fill_mask_texts`)."""
  return fill_mask_texts(apply_fn, params, vocab, texts, seq_len, mesh, top_k=top_k)[1]


def describe_candidates(vocab: Vocabulary, candidates: Candidates) -> str:
  """One line per mask: `  [MASK] 1: 'os' 0.412 | 'sys' 0.101 | ...` (tokens as the vocabulary spells them)."""
  text = getattr(vocab, "token_text", None) or (lambda i: vocab.decode([i]))
  return "\n".join(f"  [MASK] {m + 1}: " + " | ".join(f"{text(i)!r} {p:.3f}" for i, p in cands)
                   for m, cands in enumerate(candidates))
