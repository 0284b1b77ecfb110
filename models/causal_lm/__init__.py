"""Decoder-only causal Transformer: GPT-2 style (learned positions, biases, GELU-tanh MLP) or a modern pre-norm
RoPE variant (no biases, GeGLU), with a next-token objective and a KV-cache decoding interface."""
from models.causal_lm.config import CausalLmConfig
from models.causal_lm.model import CausalLm
from models.causal_lm.objective import NextTokenObjective

__all__ = ["CausalLmConfig", "CausalLm", "NextTokenObjective"]
