"""Normalisation layers."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


def LayerNorm(eps: float, use_bias: bool = False, dtype: Any = jnp.float32, name: str | None = None) -> nn.LayerNorm:
  """Mean-centred LayerNorm (not RMSNorm); ModernBERT uses eps=1e-5 and no bias.

  Statistics are computed in float32 with the two-pass variance (use_fast_variance=False), which is what
  PyTorch does; the fast E[x^2]-E[x]^2 form costs precision that logit parity notices.
  """
  return nn.LayerNorm(epsilon=eps, use_bias=use_bias, use_fast_variance=False, dtype=dtype, param_dtype=jnp.float32,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), name=name)


def RMSNorm(eps: float, dtype: Any = jnp.float32, name: str | None = None) -> nn.RMSNorm:
  """Root-mean-square norm with a learned scale (the Qwen2 / Dream blocks ADJUST copies), statistics in float32."""
  return nn.RMSNorm(epsilon=eps, dtype=dtype, param_dtype=jnp.float32,
                    scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), name=name)
