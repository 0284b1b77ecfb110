"""Token embeddings with a tied output projection."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers import matmul


def lookup(table_VD: jax.Array, ids: jax.Array, dtype: Any) -> jax.Array:
  return jnp.take(table_VD, ids, axis=0).astype(dtype)


def tied_logits(h: jax.Array, table_VD: jax.Array, dtype: Any) -> jax.Array:
  """[..., embed] -> float32 logits [..., vocab] (the tied decoder h @ E^T, float32 accumulation)."""
  return matmul.einsum("...d,vd->...v", h.astype(dtype), table_VD.astype(dtype))


def embedding_param(module: nn.Module, shape: tuple[int, int], init_std: float,
                    axes: tuple[str | None, str | None] = ("vocab", "embed")) -> jax.Array:
  """A module's float32 "embedding" table, truncated-normal initialised, with logical axes."""
  return module.param("embedding", nn.with_logical_partitioning(nn.initializers.truncated_normal(init_std), axes),
                      shape, jnp.float32)


class Embed(nn.Module):
  """Token embedding table [vocab, embed]; `attend` is the tied decoder h @ E^T (float32 accumulation)."""
  num_embeddings: int
  features: int
  dtype: Any = jnp.float32
  init_std: float = 0.02
  axes: tuple[str | None, str | None] = ("vocab", "embed")   # (None, "embed") for small position/type tables

  def setup(self):
    self.embedding = embedding_param(self, (self.num_embeddings, self.features), self.init_std, self.axes)

  def __call__(self, ids: jax.Array) -> jax.Array:
    return lookup(self.embedding, ids, self.dtype)

  def attend(self, h: jax.Array) -> jax.Array:
    """[..., embed] -> float32 logits [..., vocab]."""
    return tied_logits(h, self.embedding, self.dtype)

  def mix(self, weights: jax.Array) -> jax.Array:
    """[..., vocab] weights -> [..., embed]: the weighted sum of rows (weights @ E, float32 accumulation; a
    one-hot row gives that token's embedding exactly)."""
    return jnp.einsum("...v,vd->...d", weights.astype(jnp.float32), self.embedding,
                      preferred_element_type=jnp.float32).astype(self.dtype)
