"""ModernBERT encoder and masked-LM model. Module names mirror Hugging Face's so weight mapping is mechanical."""
import math

import flax.linen as nn
import jax.numpy as jnp

from models.layers import Embed, GegluMlp, LayerNorm, Linear, SelfAttention, matmul
from models.layers.inputs import default_inputs
from models.layers.mlp import activation
from models.modernbert.config import ModernBertConfig
from models.layers.remat import remat


class ModernBertLayer(nn.Module):
  cfg: ModernBertConfig
  layer_index: int

  @nn.compact
  def __call__(self, x_BTD, segment_ids_BT, positions_BT):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    is_global = cfg.is_global(self.layer_index)
    out_std = cfg.initializer_range / math.sqrt(2.0 * cfg.num_layers)
    init = nn.initializers.truncated_normal(cfg.initializer_range)
    out_init = nn.initializers.truncated_normal(out_std)
    # Layer 0 has no attention norm (the embedding norm precedes it).
    h = x_BTD if self.layer_index == 0 else LayerNorm(cfg.norm_eps, dtype=dt, name="attn_norm")(x_BTD)
    attn = SelfAttention(
        num_heads=cfg.num_heads, head_dim=cfg.head_dim,
        rope_theta=cfg.global_rope_theta if is_global else cfg.local_rope_theta,
        half_window=None if is_global else cfg.half_window, implementation=cfg.attention_impl, dtype=dt,
        qkv_init=init, out_init=out_init, rope_within_row=True, name="attn")
    x_BTD = x_BTD + attn(h, segment_ids_BT, positions_BT)
    h = LayerNorm(cfg.norm_eps, dtype=dt, name="mlp_norm")(x_BTD)
    x_BTD = x_BTD + GegluMlp(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_activation, dtype=dt,
                             in_init=init, out_init=out_init, name="mlp")(h)
    return nn.with_logical_constraint(x_BTD, ("batch", "length", "embed"))


class ModernBertEmbeddings(nn.Module):
  """Token embedding followed by LayerNorm (no position table: positions enter through RoPE)."""
  cfg: ModernBertConfig

  def setup(self):
    cfg = self.cfg
    self.tok_embeddings = Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.compute_dtype,
                                init_std=cfg.initializer_range)
    self.norm = LayerNorm(cfg.norm_eps, dtype=cfg.compute_dtype)

  def __call__(self, tokens_BT):
    return self.norm(self.tok_embeddings(tokens_BT))

  def attend(self, h):
    return self.tok_embeddings.attend(h)


class ModernBertEncoder(nn.Module):
  """tokens [B, T] -> final hidden states [B, T, D]. segment_ids: 0 = padding, k > 0 = k-th packed document.
  positions (default: index in the row; packing restarts them per document) must lie in [0, T): RoPE reads cos and
  sin from a [T, Dh] table (models/layers/rope.py; a position outside it gives NaN, never a silent wrap)."""
  cfg: ModernBertConfig

  def setup(self):
    cfg = self.cfg
    self.embeddings = ModernBertEmbeddings(cfg)
    layer_cls = remat(ModernBertLayer, cfg.remat)
    self.layers = [layer_cls(cfg, i, name=f"layers_{i}") for i in range(cfg.num_layers)]
    self.final_norm = LayerNorm(cfg.norm_eps, dtype=cfg.compute_dtype)

  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None):
    segment_ids_BT, positions_BT = default_inputs(tokens_BT, segment_ids_BT, positions_BT)
    x_BTD = self.embeddings(tokens_BT)
    x_BTD = nn.with_logical_constraint(x_BTD, ("batch", "length", "embed"))
    for layer in self.layers:
      x_BTD = layer(x_BTD, segment_ids_BT, positions_BT)
    return self.final_norm(x_BTD)

  def attend(self, h):
    return self.embeddings.attend(h)


class ModernBertPredictionHead(nn.Module):
  """dense -> activation -> LayerNorm, applied before the tied decoder."""
  cfg: ModernBertConfig

  @nn.compact
  def __call__(self, h_BTD):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    out_init = nn.initializers.truncated_normal(cfg.initializer_range / math.sqrt(2.0 * cfg.num_layers))
    h_BTD = Linear((cfg.hidden_size,), ("embed", None), dtype=dt, kernel_init=out_init, name="dense")(h_BTD)
    return LayerNorm(cfg.norm_eps, dtype=dt, name="norm")(activation(cfg.classifier_activation)(h_BTD))


class ModernBertForMaskedLM(nn.Module):
  """Encoder + MLM head (dense -> act -> norm) + tied decoder with its own bias. Returns float32 logits.

  With `predict_at_BM` ([B, M] indices into each row) the head and decoder run on those M positions only and the
  logits are [B, M, V]: the masked-LM objective's sparse head (Hugging Face's `sparse_prediction`), which skips
  the head where the loss reads nothing (models/modernbert/objective.py)."""
  cfg: ModernBertConfig

  @nn.compact
  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, attention_mask=None, predict_at_BM=None):
    """`attention_mask` ([B, T], 1 = token, 0 = padding; Hugging Face's argument) stands in for segment ids."""
    cfg = self.cfg
    if segment_ids_BT is None and attention_mask is not None:
      segment_ids_BT = jnp.asarray(attention_mask, jnp.int32)
    encoder = ModernBertEncoder(cfg, name="model")
    h_BTD = encoder(tokens_BT, segment_ids_BT, positions_BT)
    if predict_at_BM is not None:
      h_BTD = jnp.take_along_axis(h_BTD, predict_at_BM[..., None], axis=1)   # [B, M, D]
    h_BTD = ModernBertPredictionHead(cfg, name="head")(h_BTD)
    bias = self.param("decoder_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                      (cfg.vocab_size,), jnp.float32)
    logits_BTV = matmul.add_bias(encoder.attend(h_BTD), bias, cfg.compute_dtype)
    return nn.with_logical_constraint(logits_BTV, ("batch", "length", "vocab"))
