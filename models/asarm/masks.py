"""Visibility rules of the any-subset AR model along an order given by ranks (rank[pos] = place in the order).

Prompt = positions with rank < m. Along the canonical any-subset order (visible positions ascending, then the
generated ones ascending), the target of the joint is the chain  prod_i p(x_sigma(i) | x_sigma(<i)).

One stream: N content tokens followed by T query tokens.
  content i reads content j  iff  rank_j < rank_i, or both are prompt (the prompt is bidirectional), or i == j;
  query t (target position p_t, visibility limit lim_t) reads content j iff rank_j < lim_t; and itself only.
The density ("verify") query for p_t has lim_t = rank(p_t): it sees exactly x_sigma(<i), so one pass gives every
conditional of the joint. The draft query at decoding step n has lim_t = n: it sees the decoded tokens x_sigma(<n)
only, so the drafts are conditionally independent. Content states are the same in both passes (a decoded token only
reads earlier ranks either way), which is why one content mask serves both. Queries never read other queries: in a
density pass the query for sigma(i+1) has read x_sigma(i), so the query for sigma(i) would see its own target.
"""
import jax
import jax.numpy as jnp


def canonical_ranks(visible_BN: jax.Array) -> jax.Array:
  """Ranks of the any-subset canonical order: visible positions ascending, then hidden positions ascending."""
  N = visible_BN.shape[-1]
  key = jnp.where(visible_BN, 0, N) + jnp.arange(N)
  return jnp.argsort(jnp.argsort(key, axis=-1), axis=-1).astype(jnp.int32)


def one_stream_mask(rank_BN: jax.Array, m_B: jax.Array, query_limit_BT: jax.Array,
                    segment_ids_BN: jax.Array | None = None, query_pos_BT: jax.Array | None = None) -> jax.Array:
  """Boolean [B, 1, N + T, N + T] attention mask of the one-stream model (see the module docstring).

  `segment_ids_BN` (0 = padding; packed documents numbered from 1; a boolean "valid" mask is one document per
  row) confines every read to the reader's own document: a content token reads its document only, a query the
  document of its target `query_pos_BT`. Padding counts as prompt in the ranks, is never a target, never read."""
  B, N = rank_BN.shape
  T = query_limit_BT.shape[1]
  prompt_BN = rank_BN < m_B[:, None]
  content = (rank_BN[:, None, :] < rank_BN[:, :, None]) | (prompt_BN[:, :, None] & prompt_BN[:, None, :])
  query = rank_BN[:, None, :] < query_limit_BT[:, :, None]                      # [B, T, N]
  if segment_ids_BN is not None:
    seg_BN = segment_ids_BN.astype(jnp.int32)
    real_B1N = (seg_BN > 0)[:, None, :]
    content &= real_B1N & (seg_BN[:, None, :] == seg_BN[:, :, None])
    query_seg_BT = jnp.take_along_axis(seg_BN, query_pos_BT, axis=1)
    query &= real_B1N & (seg_BN[:, None, :] == query_seg_BT[:, :, None])
  content |= jnp.eye(N, dtype=bool)[None]
  top = jnp.concatenate([content, jnp.zeros((B, N, T), bool)], axis=2)
  bottom = jnp.concatenate([query, jnp.broadcast_to(jnp.eye(T, dtype=bool), (B, T, T))], axis=2)
  return jnp.concatenate([top, bottom], axis=1)[:, None]
