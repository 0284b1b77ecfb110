"""Rotary position embeddings, NeoX / rotate-half style (pairs (j, j + Dh/2)), computed in float32."""
import jax
import jax.numpy as jnp


def rope_cos_sin(positions_BT: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
  """Returns cos, sin of shape [B, T, Dh] for integer positions."""
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))  # [Dh/2]
  freqs_BTF = positions_BT.astype(jnp.float32)[..., None] * inv_freq
  emb_BTD = jnp.concatenate([freqs_BTF, freqs_BTF], axis=-1)
  return jnp.cos(emb_BTD), jnp.sin(emb_BTD)


def _rotate_half(x: jax.Array) -> jax.Array:
  half = x.shape[-1] // 2
  return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x_BTHD: jax.Array, positions_BT: jax.Array, theta: float) -> jax.Array:
  """Rotates queries or keys [B, T, H, Dh] by their positions; the result keeps x's dtype."""
  cos, sin = rope_cos_sin(positions_BT, x_BTHD.shape[-1], theta)
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  x32 = x_BTHD.astype(jnp.float32)
  return (x32 * cos + _rotate_half(x32) * sin).astype(x_BTHD.dtype)
