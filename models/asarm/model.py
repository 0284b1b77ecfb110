"""The one-stream any-subset autoregressive transformer."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.asarm.config import AsArmConfig
from models.asarm.masks import one_stream_mask
from models.layers import Embed, GegluMlp, LayerNorm, SelfAttention


class AsArmLayer(nn.Module):
  cfg: AsArmConfig

  @nn.compact
  def __call__(self, x_BLD, positions_BL, mask_B1LL):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    init = nn.initializers.truncated_normal(cfg.initializer_range)
    out_init = nn.initializers.truncated_normal(cfg.initializer_range / math.sqrt(2.0 * cfg.num_layers))
    h = LayerNorm(cfg.norm_eps, dtype=dt, name="attn_norm")(x_BLD)
    x_BLD = x_BLD + SelfAttention(num_heads=cfg.num_heads, head_dim=cfg.head_dim, rope_theta=cfg.rope_theta,
                                  implementation="einsum", dtype=dt, qkv_init=init, out_init=out_init,
                                  name="attn")(h, None, positions_BL, mask_B1TT=mask_B1LL)
    h = LayerNorm(cfg.norm_eps, dtype=dt, name="mlp_norm")(x_BLD)
    x_BLD = x_BLD + GegluMlp(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_activation, dtype=dt,
                             in_init=init, out_init=out_init, name="mlp")(h)
    return nn.with_logical_constraint(x_BLD, ("batch", "length", "embed"))


class AsArm(nn.Module):
  """logits [B, T, V] of the T query tokens.

  tokens_BN: content (mask_id where not revealed); rank_BN: each position's place in the order; m_B: prompt size;
  query_pos_BT: the target position of each query; query_limit_BT: the query reads content of rank < limit
  (rank(target) for the joint's conditionals, the decoding step n for conditionally independent drafts).
  segment_ids_BN: 0 at padding (never read), packed documents numbered from 1 (nothing reads across documents; a
  boolean valid mask works as one document per row); positions_BN: RoPE positions of the content (default: 0..N-1;
  packed rows restart at each document), a query takes its target's.
  """
  cfg: AsArmConfig

  def setup(self):
    cfg = self.cfg
    self.embed = Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.compute_dtype, init_std=cfg.initializer_range)
    self.query_embedding = self.param("query_embedding", nn.with_logical_partitioning(
        nn.initializers.truncated_normal(cfg.initializer_range), ("embed",)), (cfg.hidden_size,), jnp.float32)
    layer_cls = nn.remat(AsArmLayer) if cfg.remat else AsArmLayer
    self.layers = [layer_cls(cfg, name=f"layers_{i}") for i in range(cfg.num_layers)]
    self.final_norm = LayerNorm(cfg.norm_eps, dtype=cfg.compute_dtype)
    self.decoder_bias = self.param("decoder_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                                   (cfg.vocab_size,), jnp.float32)

  def __call__(self, tokens_BN, rank_BN, m_B, query_pos_BT, query_limit_BT, segment_ids_BN=None, positions_BN=None):
    B, N = tokens_BN.shape
    T = query_pos_BT.shape[1]
    content_BND = self.embed(tokens_BN)
    query_BTD = jnp.broadcast_to(self.query_embedding.astype(content_BND.dtype), (B, T, self.cfg.hidden_size))
    x_BLD = jnp.concatenate([content_BND, query_BTD], axis=1)
    if positions_BN is None:
      positions_BN = jnp.broadcast_to(jnp.arange(N), (B, N))
    positions_BL = jnp.concatenate([positions_BN, jnp.take_along_axis(positions_BN, query_pos_BT, axis=1)], axis=1)
    mask = one_stream_mask(rank_BN, m_B, query_limit_BT, segment_ids_BN, query_pos_BT)
    for layer in self.layers:
      x_BLD = layer(x_BLD, positions_BL, mask)
    h_BTD = self.final_norm(x_BLD[:, N:])
    logits_BTV = self.embed.attend(h_BTD) + self.decoder_bias
    return nn.with_logical_constraint(logits_BTV, ("batch", "length", "vocab"))


def banned_log_probs(logits: jax.Array, mask_id: int, temperature: float = 1.0,
                     vocab_limit: int | None = None) -> jax.Array:
  """float32 log-probabilities at `temperature` with the mask token (and ids >= vocab_limit: embedding rows
  beyond the real vocabulary) removed and the rest renormalised."""
  logits = logits.astype(jnp.float32) / temperature
  ids = jnp.arange(logits.shape[-1])
  banned = ids == mask_id
  if vocab_limit is not None:
    banned |= ids >= vocab_limit
  return jax.nn.log_softmax(jnp.where(banned, -jnp.inf, logits), axis=-1)
