"""Mask filling for masked LMs: fill the most confident [MASK] first, one per model call, until none is left."""
from functools import partial
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data.sources import framed_rows, pad_rows
from data.vocab import Vocabulary


def fill_masks(apply_fn: Callable[..., jax.Array], params: Any, tokens_BT: jax.Array, segment_ids_BT: jax.Array, *,
               mask_id: int, low: int, high: int, num_iters: int) -> jax.Array:
  """Iterative confidence-ordered greedy filling; only ids in [low, high) can be predicted.

  Each iteration re-encodes the sequence with the masks filled so far (bidirectional models condition on them).
  Jit it with the keyword arguments bound (see `fill_mask_texts`).
  """
  B = tokens_BT.shape[0]
  rows = jnp.arange(B)

  def body(_, toks_BT):
    logits_BTV = apply_fn({"params": params}, toks_BT, segment_ids_BT).astype(jnp.float32)
    ids = jnp.arange(logits_BTV.shape[-1])
    logits_BTV = jnp.where((ids >= low) & (ids < high), logits_BTV, -jnp.inf)
    pred_BT = jnp.argmax(logits_BTV, -1).astype(toks_BT.dtype)
    conf_BT = jnp.max(jax.nn.log_softmax(logits_BTV, -1), -1)
    masked_BT = toks_BT == mask_id
    pos_B = jnp.argmax(jnp.where(masked_BT, conf_BT, -jnp.inf), axis=1)
    has_mask_B = masked_BT.any(axis=1)
    new_B = jnp.where(has_mask_B, pred_BT[rows, pos_B], toks_BT[rows, pos_B])
    return toks_BT.at[rows, pos_B].set(new_B)

  return jax.lax.fori_loop(0, num_iters, body, tokens_BT)


def fill_mask_texts(apply_fn: Callable[..., jax.Array], params: Any, vocab: Vocabulary,
                    texts: Sequence[str], seq_len: int, mesh: jax.sharding.Mesh | None = None) -> list[str]:
  """Fills every "[MASK]" in each text; texts are truncated to seq_len tokens (with CLS and SEP).

  With a mesh, inputs and outputs are replicated global arrays, so this also runs with several processes.
  """
  rows = framed_rows(vocab, texts, seq_len)
  tokens, segments = pad_rows(rows, seq_len, vocab.pad_id)
  num_iters = max(int((tokens == vocab.mask_id).sum(1).max()), 1)
  replicated = jax.sharding.NamedSharding(mesh, jax.P()) if mesh is not None else None
  fill = jax.jit(partial(fill_masks, apply_fn, mask_id=vocab.mask_id, low=vocab.first_normal_id, high=vocab.size,
                         num_iters=num_iters), out_shardings=replicated)
  if replicated is not None:
    tokens, segments = jax.device_put(tokens, replicated), jax.device_put(segments, replicated)
  out = fill(params, jnp.asarray(tokens), jnp.asarray(segments))
  out = np.asarray(jax.device_get(out))
  return [vocab.decode(out[i, :len(r)]) for i, r in enumerate(rows)]


def mask_candidates(apply_fn: Callable[..., jax.Array], params: Any, vocab: Vocabulary, texts: Sequence[str],
                    seq_len: int, top_k: int = 5, mesh: jax.sharding.Mesh | None = None
                    ) -> list[list[list[tuple[int, float]]]]:
  """For each text, for each "[MASK]" in order: the `top_k` (token id, probability) pairs of one forward pass with
  every mask in place, as `transformers.pipeline("fill-mask")` reports them: probabilities are the softmax over
  the model's whole output row, and candidates are the vocabulary's normal ids (special ids and the rows a model
  pads its vocabulary with are never proposed; the pipeline would list a special token if it ranked there)."""
  rows = framed_rows(vocab, texts, seq_len)
  tokens, segments = pad_rows(rows, seq_len, vocab.pad_id)
  special = np.asarray(sorted(set(vocab.special_ids)), np.int32)

  def top(params, tokens_BT, segment_ids_BT):
    logp_BTV = jax.nn.log_softmax(apply_fn({"params": params}, tokens_BT, segment_ids_BT).astype(jnp.float32), -1)
    ids = jnp.arange(logp_BTV.shape[-1])
    allowed = (ids >= vocab.first_normal_id) & (ids < vocab.size) & ~jnp.isin(ids, special)
    logp_BTK, ids_BTK = jax.lax.top_k(jnp.where(allowed, logp_BTV, -jnp.inf), top_k)
    return jnp.exp(logp_BTK), ids_BTK

  replicated = jax.sharding.NamedSharding(mesh, jax.P()) if mesh is not None else None
  if replicated is not None:
    tokens, segments = jax.device_put(tokens, replicated), jax.device_put(segments, replicated)
  probs, ids = jax.device_get(jax.jit(top, out_shardings=replicated)(params, jnp.asarray(tokens),
                                                                      jnp.asarray(segments)))
  out = []
  for b, r in enumerate(rows):
    where = [t for t, i in enumerate(r) if i == vocab.mask_id]
    out.append([[(int(ids[b, t, j]), float(probs[b, t, j])) for j in range(top_k)] for t in where])
  return out


def describe_candidates(vocab: Vocabulary, candidates: list[list[tuple[int, float]]]) -> str:
  """One line per mask: `  [MASK] 1: 'os' 0.412 | 'sys' 0.101 | ...` (tokens as the vocabulary spells them)."""
  text = getattr(vocab, "token_text", None) or (lambda i: vocab.decode([i]))
  return "\n".join(f"  [MASK] {m + 1}: " + " | ".join(f"{text(i)!r} {p:.3f}" for i, p in cands)
                   for m, cands in enumerate(candidates))
