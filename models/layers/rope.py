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


def apply_rope(x_BTHD: jax.Array, positions_BT: jax.Array, theta: float, table_size: int | None = None) -> jax.Array:
  """Rotates queries or keys [B, T, H, Dh] by their positions; the result keeps x's dtype.

  With `table_size` (positions known to lie in [0, table_size)) cos and sin are computed once on a [table_size, Dh]
  table and gathered: computed from [B, T] positions, XLA:CPU fuses them into the backward pass's loops and
  recomputes them for every head (13% of the default config's bfloat16 step; measured when written, in the git
  history of BENCHMARKS.md). The values are the same (the same float32 formula at the same positions); a position
  outside the table reads NaN.
  """
  if table_size is None:
    cos, sin = rope_cos_sin(positions_BT, x_BTHD.shape[-1], theta)
  else:
    cos_PD, sin_PD = rope_cos_sin(jnp.arange(table_size), x_BTHD.shape[-1], theta)
    cos, sin = (jnp.take(t, positions_BT, axis=0, mode="fill", fill_value=jnp.nan) for t in (cos_PD, sin_PD))
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  x32 = x_BTHD.astype(jnp.float32)
  return (x32 * cos + _rotate_half(x32) * sin).astype(x_BTHD.dtype)
