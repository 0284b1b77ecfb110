"""Causal LM hyperparameters."""
import dataclasses
from typing import Any

import jax.numpy as jnp

from models.hparams import check_attention, check_positive, from_model_config


@dataclasses.dataclass(frozen=True)
class CausalLmConfig:
  """style="gpt2": learned absolute positions, LayerNorm with bias, biased projections, MLP with `activation`
  (GPT-2: "gelu_new", the tanh form), tied output embedding; defaults are GPT-2 small's shape.
  style="modern": RoPE (rope_theta), bias-free LayerNorm and projections, GeGLU MLP, tied output embedding."""
  vocab_size: int
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 1024
  style: str = "gpt2"
  norm_eps: float = 1e-5
  activation: str = "gelu_new"
  rope_theta: float = 10_000.0
  initializer_range: float = 0.02
  dtype: str = "float32"
  attention_impl: str = "einsum"
  remat: bool = False

  def __post_init__(self):
    check_positive(self, "num_layers", "hidden_size", "num_heads", "intermediate_size", "max_position_embeddings")
    check_attention(self.attention_impl, self.dtype)
    if self.style not in ("gpt2", "modern"):
      raise ValueError(f"model.style={self.style!r}: use 'gpt2' or 'modern'")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads={self.num_heads}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def compute_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

  @classmethod
  def from_config(cls, model_cfg, vocab_size: int) -> "CausalLmConfig":
    return from_model_config(cls, model_cfg, vocab_size)

  def matmul_params(self) -> int:
    d, i = self.hidden_size, self.intermediate_size
    mlp = 2 * d * i if self.style == "gpt2" else 3 * d * i
    return self.num_layers * (4 * d * d + mlp) + d * self.vocab_size

  def flops_per_token(self, seq_len: int, train: bool = True) -> float:
    """6·N + 12·L·S·d per trained token (attention counted dense, as executed)."""
    fwd = 2 * self.matmul_params() + 4 * self.num_layers * seq_len * self.hidden_size
    return 3 * fwd if train else fwd
