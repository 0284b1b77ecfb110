"""The key/value cache pytree used by decoding: explicit state, no Flax collections."""
import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class KVCache:
  """Keys and values of every layer for B rows of up to S positions.

  k, v: [L, B, S, H, Dh]; lengths: [B] int32, the number of positions written in each row, which is also where
  the next tokens go. Rolling back (speculative decoding, ragged prefill) is resetting `lengths`: entries past a
  row's length are never attended and are overwritten by the next write.
  """
  k: jax.Array
  v: jax.Array
  lengths: jax.Array

  @classmethod
  def init(cls, num_layers: int, batch: int, max_len: int, num_heads: int, head_dim: int,
           dtype=jnp.float32) -> "KVCache":
    shape = (num_layers, batch, max_len, num_heads, head_dim)
    return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((batch,), jnp.int32))

  @property
  def max_len(self) -> int:
    return self.k.shape[2]

  def rewind(self, lengths: jax.Array) -> "KVCache":
    return self.replace(lengths=jnp.asarray(lengths, jnp.int32))
