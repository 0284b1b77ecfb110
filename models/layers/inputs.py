"""Defaults for the optional per-token inputs, and sequence pooling. Legend: B batch, T length, D width."""
import jax
import jax.numpy as jnp

POOLINGS = ("cls", "mean")


def default_inputs(tokens_BT: jax.Array, segment_ids_BT: jax.Array | None = None,
                   positions_BT: jax.Array | None = None,
                   attention_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """(segment ids, positions): one document per row unless given. Hugging Face's `attention_mask` (1 = token,
  0 = padding) stands in for segment ids; positions count from 0 in each row."""
  if segment_ids_BT is None:
    segment_ids_BT = jnp.ones_like(tokens_BT) if attention_mask is None else jnp.asarray(attention_mask, jnp.int32)
  if positions_BT is None:
    positions_BT = jnp.broadcast_to(jnp.arange(tokens_BT.shape[1]), tokens_BT.shape)
  return segment_ids_BT, positions_BT


def pool(h_BTD: jax.Array, segment_ids_BT: jax.Array, pooling: str) -> jax.Array:
  """[B, D]: "cls" the first token, "mean" the mean over real tokens (segment id > 0)."""
  if pooling == "cls":
    return h_BTD[:, 0]
  if pooling == "mean":
    real = (segment_ids_BT > 0)[..., None].astype(h_BTD.dtype)
    return jnp.sum(h_BTD * real, axis=1) / jnp.maximum(jnp.sum(real, axis=1), 1)
  raise ValueError(f"model.pooling={pooling!r}: use one of {POOLINGS}")
