"""A dense layer over several input and output axes, with logical partitioning of its kernel."""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers.matmul import contract_last

Initializer = Callable[..., jax.Array]


class Linear(nn.Module):
  """y = x · W, contracting the last `n_in` axes of x with the first `n_in` axes of W.

  The kernel has shape `x.shape[-n_in:] + features` and logical names `kernel_axes` (one per kernel axis),
  so a fused projection such as QKV can be stored as [embed, 3, heads, kv] and sharded over heads.
  Matmuls accumulate in float32 with operands in `dtype`, forward and backward (models/layers/matmul.py).
  """
  features: Sequence[int]
  kernel_axes: Sequence[str | None]
  n_in: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.truncated_normal(0.02)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = tuple(self.features)
    in_shape = x.shape[-self.n_in:]
    kernel_shape = in_shape + features
    if len(self.kernel_axes) != len(kernel_shape):
      raise ValueError(f"{self.name}: kernel_axes {self.kernel_axes} must name all axes of kernel {kernel_shape}")
    kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, tuple(self.kernel_axes)),
                        kernel_shape, jnp.float32)
    y = contract_last(x.astype(self.dtype), kernel.astype(self.dtype), self.n_in)
    if self.use_bias:
      bias_axes = tuple(self.kernel_axes[self.n_in:])
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, bias_axes), features, jnp.float32)
      y = y + bias
    return y.astype(self.dtype)
