"""The one-stream any-subset autoregressive transformer."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.asarm.config import AsArmConfig
from models.asarm.masks import one_stream_mask
from models.layers import Embed, GegluMlp, LayerNorm, SelfAttention, matmul
from models.layers.remat import remat


class AsArmLayer(nn.Module):
  cfg: AsArmConfig

  @nn.compact
  def __call__(self, x_BLD, positions_BL, mask_B1LL, memory=None):
    """`memory=(k_BHDS, v_BHSD, slot_BL, self_BL)`: write x's keys/values at those slots, attend the memory (the
    mask over its slots) and, where self_BL, the token itself; then returns (x, (k, v) memory with the writes)."""
    cfg, dt = self.cfg, self.cfg.compute_dtype
    init = nn.initializers.truncated_normal(cfg.initializer_range)
    out_init = nn.initializers.truncated_normal(cfg.initializer_range / math.sqrt(2.0 * cfg.num_layers))
    h = LayerNorm(cfg.norm_eps, dtype=dt, name="attn_norm")(x_BLD)
    attn = SelfAttention(num_heads=cfg.num_heads, head_dim=cfg.head_dim, rope_theta=cfg.rope_theta,
                         implementation="einsum", dtype=dt, qkv_init=init, out_init=out_init, rope_within_row=True,
                         name="attn")(h, None, positions_BL, mask_B1TT=mask_B1LL, memory=memory)
    attn, kv = attn if memory is not None else (attn, None)
    x_BLD = x_BLD + attn
    h = LayerNorm(cfg.norm_eps, dtype=dt, name="mlp_norm")(x_BLD)
    x_BLD = x_BLD + GegluMlp(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_activation, dtype=dt,
                             in_init=init, out_init=out_init, name="mlp")(h)
    x_BLD = nn.with_logical_constraint(x_BLD, ("batch", "length", "embed"))
    return x_BLD if memory is None else (x_BLD, kv)


class AsArm(nn.Module):
  """logits [B, T, V] of the T query tokens.

  tokens_BN: content (mask_id where not revealed); rank_BN: each position's place in the order; m_B: prompt size;
  query_pos_BT: the target position of each query; query_limit_BT: the query reads content of rank < limit
  (rank(target) for the joint's conditionals, the decoding step n for conditionally independent drafts).
  segment_ids_BN: 0 at padding (never read), packed documents numbered from 1 (nothing reads across documents; a
  boolean valid mask works as one document per row); positions_BN: RoPE positions of the content (default: 0..N-1;
  packed rows restart at each document), a query takes its target's. Positions lie in [0, N): without a cache
  RoPE reads cos / sin from a table of the stream's length (models/layers/rope.py; NaN outside it, never a wrap).
  """
  cfg: AsArmConfig

  def setup(self):
    cfg = self.cfg
    self.embed = Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.compute_dtype, init_std=cfg.initializer_range)
    self.query_embedding = self.param("query_embedding", nn.with_logical_partitioning(
        nn.initializers.truncated_normal(cfg.initializer_range), ("embed",)), (cfg.hidden_size,), jnp.float32)
    layer_cls = remat(AsArmLayer, cfg.remat)
    self.layers = [layer_cls(cfg, name=f"layers_{i}") for i in range(cfg.num_layers)]
    self.final_norm = LayerNorm(cfg.norm_eps, dtype=cfg.compute_dtype)
    self.decoder_bias = self.param("decoder_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                                   (cfg.vocab_size,), jnp.float32)

  def _stream(self, tokens_BP, num_queries):
    content_BPD = self.embed(tokens_BP)
    B, D = tokens_BP.shape[0], self.cfg.hidden_size
    query_BQD = jnp.broadcast_to(self.query_embedding.astype(content_BPD.dtype), (B, num_queries, D))
    return jnp.concatenate([content_BPD, query_BQD], axis=1)

  def _head(self, h_BQD):
    logits_BQV = matmul.add_bias(self.embed.attend(self.final_norm(h_BQD)), self.decoder_bias, self.cfg.compute_dtype)
    return nn.with_logical_constraint(logits_BQV, ("batch", "length", "vocab"))

  def __call__(self, tokens_BN, rank_BN, m_B, query_pos_BT, query_limit_BT, segment_ids_BN=None, positions_BN=None):
    B, N = tokens_BN.shape
    T = query_pos_BT.shape[1]
    x_BLD = self._stream(tokens_BN, T)
    if positions_BN is None:
      positions_BN = jnp.broadcast_to(jnp.arange(N), (B, N))
    positions_BL = jnp.concatenate([positions_BN, jnp.take_along_axis(positions_BN, query_pos_BT, axis=1)], axis=1)
    mask = one_stream_mask(rank_BN, m_B, query_limit_BT, segment_ids_BN, query_pos_BT)
    for layer in self.layers:
      x_BLD = layer(x_BLD, positions_BL, mask)
    return self._head(x_BLD[:, N:])

  def cached(self, cache_k, cache_v, readable_BS, tokens_BP, rank_BP, pos_BP, live_BP, m_B, query_pos_BQ,
             query_limit_BQ):
    """One call of the cached decoder: (logits [B, Q, V] of the queries, (cache_k, cache_v) with the content's
    entries written).

    The cache holds, per layer (`cache_k`: L arrays [B, H, Dh, S], `cache_v`: [B, H, S, Dh]), the keys and values
    of content tokens by rank (slot r = the token of rank r; `readable_BS`: slots whose entries are final and
    real). Content states are final once written: a decoded token reads only lower ranks (models/asarm/masks.py),
    so the call encodes only the P content tokens not yet cached (`tokens_BP` at row positions `pos_BP`, ranks
    `rank_BP`, `live_BP` = real) and the Q queries. It writes each live content token's entries at its rank's slot
    first and then applies the one-stream rules over [cache | queries]: content reads lower ranks (and, in the
    prompt, all of the prompt) and itself, a query reads ranks below its limit and itself. The caller decides which
    written slots become readable (an ASSD verify call writes drafts that may be rejected; a later call overwrites
    them). With an empty cache and the whole row as content it is the uncached forward (the prefill).
    Rows of one document (padding excluded through `live_BP` / `readable_BS`; no packed segments).
    """
    B, P = tokens_BP.shape
    Q, S = query_pos_BQ.shape[1], readable_BS.shape[1]
    slot_S = jnp.arange(S)
    prompt_BP = rank_BP < m_B[:, None]
    new_BPS = live_BP[:, :, None] & (rank_BP[:, :, None] == slot_S[None, None])     # content p is written at s
    new_BS = new_BPS.any(axis=1)
    prompt_S = slot_S[None, None, :] < m_B[:, None, None]
    below_BPS = slot_S[None, None, :] < rank_BP[:, :, None]
    c_cache = ((readable_BS[:, None, :] & below_BPS) | (new_BS[:, None, :] & (below_BPS | (prompt_BP[:, :, None]
               & prompt_S))) | new_BPS)                                          # own entry through its slot
    q_cache = (readable_BS | new_BS)[:, None, :] & (slot_S[None, None, :] < query_limit_BQ[:, :, None])
    mask = jnp.concatenate([c_cache, q_cache], axis=1)[:, None]                   # [B, 1, P + Q, S]
    self_BL = jnp.concatenate([~live_BP, jnp.ones((B, Q), bool)], axis=1)        # unstored tokens read themselves
    x_BLD = self._stream(tokens_BP, Q)
    positions_BL = jnp.concatenate([pos_BP, query_pos_BQ], axis=1)
    slot_BL = jnp.concatenate([jnp.where(live_BP, rank_BP, S), jnp.full((B, Q), S, rank_BP.dtype)], axis=1)
    ks, vs = [], []
    for i, layer in enumerate(self.layers):
      x_BLD, (k, v) = layer(x_BLD, positions_BL, mask, memory=(cache_k[i], cache_v[i], slot_BL, self_BL))
      ks.append(k)
      vs.append(v)
    return self._head(x_BLD[:, P:]), (tuple(ks), tuple(vs))


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
