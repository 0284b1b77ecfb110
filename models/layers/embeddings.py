"""Token embeddings with a tied output projection."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class Embed(nn.Module):
  """Token embedding table [vocab, embed]; `attend` is the tied decoder h @ E^T (float32 accumulation)."""
  num_embeddings: int
  features: int
  dtype: Any = jnp.float32
  init_std: float = 0.02
  axes: tuple[str | None, str | None] = ("vocab", "embed")   # (None, "embed") for small position/type tables

  def setup(self):
    self.embedding = self.param(
        "embedding",
        nn.with_logical_partitioning(nn.initializers.truncated_normal(self.init_std), self.axes),
        (self.num_embeddings, self.features), jnp.float32)

  def __call__(self, ids: jax.Array) -> jax.Array:
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def attend(self, h: jax.Array) -> jax.Array:
    """[..., embed] -> float32 logits [..., vocab]."""
    return jnp.einsum("...d,vd->...v", h.astype(self.dtype), self.embedding.astype(self.dtype),
                      preferred_element_type=jnp.float32)
