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
