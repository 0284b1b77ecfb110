"""Decoder-only Transformer. Parameter names follow Hugging Face GPT-2 (transformer/wte, wpe, h_i/ln_1, attn,
ln_2, mlp, ln_f) so that models/hf/gpt2.py maps weights mechanically."""
import math

import flax.linen as nn
import jax.numpy as jnp

from models.layers.kv_cache import KVCache
from models.causal_lm.config import CausalLmConfig
from models.causal_lm.lexical import LexicalEmbedding
from models.layers import Embed, GegluMlp, LayerNorm, Mlp, SelfAttention
from models.layers.inputs import default_inputs
from models.layers.remat import remat


class CausalBlock(nn.Module):
  cfg: CausalLmConfig

  @nn.compact
  def __call__(self, x_BTD, segment_ids_BT, positions_BT, kv_cache=None, deterministic=True):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    drop = nn.Dropout(cfg.dropout_rate, deterministic=deterministic or not cfg.dropout_rate)
    gpt2 = cfg.style == "gpt2"
    init = nn.initializers.normal(cfg.initializer_range)
    out_init = nn.initializers.normal(cfg.initializer_range / math.sqrt(2 * cfg.num_layers))
    attn = SelfAttention(cfg.num_heads, cfg.head_dim, rope_theta=None if gpt2 else cfg.rope_theta, causal=True,
                         use_bias=gpt2, implementation=cfg.attention_impl, dtype=dt, qkv_init=init,
                         out_init=out_init, dropout_rate=cfg.dropout_rate, name="attn")
    h = LayerNorm(cfg.norm_eps, use_bias=gpt2, dtype=dt, name="ln_1")(x_BTD)
    a = attn(h, segment_ids_BT, positions_BT, kv_cache, deterministic=deterministic)
    a, new_kv = (a, None) if kv_cache is None else a
    x_BTD = x_BTD + drop(a)
    h = LayerNorm(cfg.norm_eps, use_bias=gpt2, dtype=dt, name="ln_2")(x_BTD)
    if gpt2:
      mlp = Mlp(cfg.hidden_size, cfg.intermediate_size, cfg.activation, dtype=dt, in_init=init, out_init=out_init,
                name="mlp")
    else:
      mlp = GegluMlp(cfg.hidden_size, cfg.intermediate_size, "gelu", dtype=dt, in_init=init, out_init=out_init,
                     name="mlp")
    x_BTD = nn.with_logical_constraint(x_BTD + drop(mlp(h)), ("batch", "length", "embed"))
    return x_BTD, new_kv


class CausalLm(nn.Module):
  """tokens [B, T] -> float32 logits [B, T, V]; with `cache` -> (logits, updated cache).

  Training / full forward: segment ids (0 = padding) isolate packed documents, positions restart per document.
  Decoding: the new tokens occupy cache rows lengths..lengths+T-1 of each row; positions are those row indices.
  model.embedding="lexinvariant"/"semi" (models/causal_lm/lexical.py) read `embed_keys` [B, 2] uint32 (one raw
  PRNG key per row, from the objective's prepare) or an explicit `vectors_BVD`; they have no cached decoding.
  `return_hidden` adds the final (post-norm) hidden states [B, T, D] to the output.
  `inputs_embeds_BTD` replaces the token lookup (positions are still added), and `token_weights_BTV` replaces it
  by the weighted sum of the tied embedding rows (soft tokens: CoT2's alpha @ W_E); `tokens_BT` then only gives
  the shape and may be None. `deterministic=False` applies model.dropout_rate (GPT-2's
  embedding, attention and residual dropout; rng stream "dropout").
  """
  cfg: CausalLmConfig

  @nn.compact
  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, cache: KVCache | None = None,
               embed_keys=None, vectors_BVD=None, return_hidden: bool = False, inputs_embeds_BTD=None,
               token_weights_BTV=None, deterministic: bool = True):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    soft = inputs_embeds_BTD if inputs_embeds_BTD is not None else token_weights_BTV
    if soft is not None and cfg.embedding != "learned":
      raise ValueError(f"model.embedding={cfg.embedding!r}: soft inputs need the learned token table")
    if tokens_BT is None:
      tokens_BT = jnp.zeros(soft.shape[:2], jnp.int32)
    B, T = tokens_BT.shape
    if cache is not None:
      if cfg.embedding != "learned":
        raise ValueError(f"model.embedding={cfg.embedding!r} has no cached decoding (the per-sequence draw is not "
                         "carried in the KV cache); score full sequences instead")
      positions_BT = cache.lengths[:, None] + jnp.arange(T)[None, :]
    else:
      segment_ids_BT, positions_BT = default_inputs(tokens_BT, segment_ids_BT, positions_BT)
    if cfg.embedding == "learned":   # the parameter layout of Hugging Face GPT-2 (transformer/wte)
      wte = Embed(cfg.vocab_size, cfg.hidden_size, dtype=dt, init_std=cfg.initializer_range, name="wte")
      if inputs_embeds_BTD is not None:
        x_BTD = inputs_embeds_BTD.astype(dt)
      elif token_weights_BTV is not None:
        x_BTD = wte.mix(token_weights_BTV)
      else:
        x_BTD = wte(tokens_BT)
      lex_ctx = None
    else:
      wte = LexicalEmbedding(cfg.vocab_size, cfg.hidden_size, cfg.embedding, cfg.num_special, cfg.semi_fraction,
                             cfg.lex_embed_std, cfg.lex_out_scale, cfg.lex_sample, cfg.initializer_range, dt,
                             name="wte")
      x_BTD, lex_ctx = wte.embed(tokens_BT, segment_ids_BT, embed_keys, vectors_BVD)
    if cfg.style == "gpt2":
      wpe = Embed(cfg.max_position_embeddings, cfg.hidden_size, dtype=dt, init_std=cfg.pos_init_std, name="wpe")
      x_BTD = x_BTD + wpe(positions_BT)
    x_BTD = nn.Dropout(cfg.dropout_rate, deterministic=deterministic or not cfg.dropout_rate)(x_BTD)
    x_BTD = nn.with_logical_constraint(x_BTD, ("batch", "length", "embed"))
    block_cls = remat(CausalBlock, cfg.remat, static_argnums=(5,))   # 5: deterministic (0 = self)
    new_k, new_v = [], []
    for i in range(cfg.num_layers):
      kv = None if cache is None else (cache.k[i], cache.v[i], cache.lengths)
      x_BTD, layer_kv = block_cls(cfg, name=f"h_{i}")(x_BTD, segment_ids_BT, positions_BT, kv, deterministic)
      if layer_kv is not None:
        new_k.append(layer_kv[0])
        new_v.append(layer_kv[1])
    x_BTD = LayerNorm(cfg.norm_eps, use_bias=cfg.style == "gpt2", dtype=dt, name="ln_f")(x_BTD)
    logits = wte.attend(x_BTD) if lex_ctx is None else wte.attend(x_BTD, lex_ctx)
    logits_BTV = nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
    if cache is None:
      return (logits_BTV, x_BTD) if return_hidden else logits_BTV
    return logits_BTV, KVCache(jnp.stack(new_k), jnp.stack(new_v), cache.lengths + T)

  def init_cache(self, batch: int, max_len: int) -> KVCache:
    cfg = self.cfg
    return KVCache.init(cfg.num_layers, batch, max_len, cfg.num_heads, cfg.head_dim, cfg.compute_dtype)


