"""Shared layers. Parameters carry logical axis names; activations are constrained at block boundaries.

Logical names (mapped to mesh axes by the rules in `configs/sharding.py`):
  batch, length, embed, mlp, heads, kv, vocab.
"""
from models.layers.attention import SelfAttention, attention_mask
from models.layers.embeddings import Embed
from models.layers.linear import Linear
from models.layers.mlp import GegluMlp, Mlp
from models.layers.norms import LayerNorm, RMSNorm
from models.layers.rope import apply_rope

__all__ = ["SelfAttention", "attention_mask", "Embed", "Linear", "GegluMlp", "Mlp", "LayerNorm", "RMSNorm", "apply_rope"]
