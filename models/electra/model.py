"""ELECTRA generator and discriminator around one shared embedding module.

Parameter tree (joint pretraining model; each standalone class holds the subset it uses, under the same names):
  embeddings/{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm}   shared by both towers
  generator/{encoder/{embeddings_project, layers_i, ...}, generator_predictions/{dense, LayerNorm}, lm_bias}
  discriminator/{encoder/{embeddings_project, layers_i, ...}, discriminator_predictions/{dense, dense_prediction}}
Because the names agree, weights move between the joint model, the standalone towers and the classifier by path
(`checkpoint.init_from`), and the shared embedding is literally one parameter that both losses update.
"""
import flax.linen as nn
import jax.numpy as jnp

from models.electra.config import ElectraConfig
from models.layers import Embed, LayerNorm, Linear, Mlp, SelfAttention
from models.layers.inputs import default_inputs, pool
from models.layers.mlp import activation
from models.layers.remat import remat


def _init(cfg: ElectraConfig):
  return nn.initializers.truncated_normal(cfg.initializer_range)


class ElectraEmbeddings(nn.Module):
  """word (+ absolute position + token type, classic backbone) embeddings -> LayerNorm -> dropout; width E."""
  cfg: ElectraConfig

  def setup(self):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    self.word_embeddings = Embed(cfg.vocab_size, cfg.embedding_size, dtype=dt, init_std=cfg.initializer_range)
    if cfg.backbone == "classic":
      self.position_embeddings = Embed(cfg.max_position_embeddings, cfg.embedding_size, dtype=dt,
                                       init_std=cfg.initializer_range, axes=(None, "embed"))
      self.token_type_embeddings = Embed(cfg.type_vocab_size, cfg.embedding_size, dtype=dt,
                                         init_std=cfg.initializer_range, axes=(None, "embed"))
    self.LayerNorm = LayerNorm(cfg.norm_eps, use_bias=cfg.norm_bias, dtype=dt)
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def __call__(self, tokens_BT, positions_BT, token_type_ids_BT=None, deterministic: bool = True):
    x_BTE = self.word_embeddings(tokens_BT)
    if self.cfg.backbone == "classic":
      if token_type_ids_BT is None:   # Hugging Face adds row 0 of the type table when no types are given
        token_type_ids_BT = jnp.zeros_like(tokens_BT)
      x_BTE = x_BTE + self.position_embeddings(positions_BT) + self.token_type_embeddings(token_type_ids_BT)
    x_BTE = self.LayerNorm(x_BTE)
    return self.dropout(x_BTE, deterministic=deterministic)

  def attend(self, h):
    return self.word_embeddings.attend(h)


class BertLayer(nn.Module):
  """Post-norm BERT block: x = LN(x + drop(attn(x))); x = LN(x + drop(W2 gelu(W1 x))). All projections biased."""
  cfg: ElectraConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BTD, segment_ids_BT, positions_BT):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    a_BTD = SelfAttention(num_heads=cfg.num_heads, head_dim=cfg.head_dim, rope_theta=None, use_bias=True,
                          implementation=cfg.attention_impl, dtype=dt, qkv_init=_init(cfg), out_init=_init(cfg),
                          name="attention")(x_BTD, segment_ids_BT, positions_BT)
    a_BTD = nn.Dropout(cfg.dropout_rate)(a_BTD, deterministic=self.deterministic)
    x_BTD = LayerNorm(cfg.norm_eps, use_bias=True, dtype=dt, name="attention_norm")(x_BTD + a_BTD)
    m_BTD = Mlp(cfg.hidden_size, cfg.intermediate_size, act=cfg.hidden_act, use_bias=True, dtype=dt,
                in_init=_init(cfg), out_init=_init(cfg), name="mlp")(x_BTD)
    m_BTD = nn.Dropout(cfg.dropout_rate)(m_BTD, deterministic=self.deterministic)
    x_BTD = LayerNorm(cfg.norm_eps, use_bias=True, dtype=dt, name="output_norm")(x_BTD + m_BTD)
    return nn.with_logical_constraint(x_BTD, ("batch", "length", "embed"))


class ElectraEncoder(nn.Module):
  """embeddings_project (E -> d, iff they differ) followed by the tower's layers; [B, T, E] -> [B, T, d].

  The modernbert backbone runs ModernBERT layers and its final norm (its layer 0 has no pre-norm, as in
  ModernBERT, so it sees the projected embedding-norm output). Hidden dropout applies to the classic backbone.
  """
  cfg: ElectraConfig

  @nn.compact
  def __call__(self, x_BTE, segment_ids_BT, positions_BT, deterministic: bool = True):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    x_BTD = x_BTE
    if cfg.has_projection:
      x_BTD = Linear((cfg.hidden_size,), (None, "embed"), use_bias=True, dtype=dt, kernel_init=_init(cfg),
                     name="embeddings_project")(x_BTE)
    if cfg.backbone == "classic":
      layer_cls = remat(BertLayer, cfg.remat)
      for i in range(cfg.num_layers):
        x_BTD = layer_cls(cfg, deterministic, name=f"layers_{i}")(x_BTD, segment_ids_BT, positions_BT)
      return x_BTD
    from models.modernbert.model import ModernBertLayer
    mb = cfg.modernbert()
    layer_cls = remat(ModernBertLayer, cfg.remat)
    for i in range(cfg.num_layers):
      x_BTD = layer_cls(mb, i, name=f"layers_{i}")(x_BTD, segment_ids_BT, positions_BT)
    return LayerNorm(cfg.norm_eps, dtype=dt, name="final_norm")(x_BTD)


class DiscriminatorPredictions(nn.Module):
  """dense(d, d) -> act -> dense(d, 1): float32 replaced-token logits [B, T]."""
  cfg: ElectraConfig

  @nn.compact
  def __call__(self, h_BTD):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    h_BTD = activation(cfg.hidden_act)(Linear((cfg.hidden_size,), ("embed", None), use_bias=True, dtype=dt,
                                              kernel_init=_init(cfg), name="dense")(h_BTD))
    out_BT1 = Linear((1,), (None, None), use_bias=True, dtype=dt, kernel_init=_init(cfg),
                     name="dense_prediction")(h_BTD)
    return out_BT1[..., 0].astype(jnp.float32)


class GeneratorPredictions(nn.Module):
  """dense(d_G -> E) -> exact GELU -> LayerNorm(E), before the tied word embeddings (not d -> d).

  The activation is GELU whatever `hidden_act` says, as in `transformers` (which hard-codes it; the original TF
  code used hidden_act; the two agree for every released config)."""
  cfg: ElectraConfig

  @nn.compact
  def __call__(self, h_BTD):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    h_BTE = Linear((cfg.embedding_size,), ("embed", None), use_bias=True, dtype=dt, kernel_init=_init(cfg),
                   name="dense")(h_BTD)
    return LayerNorm(cfg.norm_eps, use_bias=cfg.norm_bias, dtype=dt, name="LayerNorm")(activation("gelu")(h_BTE))


class ElectraDiscriminator(nn.Module):
  """Encoder + replaced-token-detection head; `encode` alone gives the hidden states [B, T, d]."""
  cfg: ElectraConfig

  def setup(self):
    self.encoder = ElectraEncoder(self.cfg)
    self.discriminator_predictions = DiscriminatorPredictions(self.cfg)

  def encode(self, x_BTE, segment_ids_BT, positions_BT, deterministic=True):
    return self.encoder(x_BTE, segment_ids_BT, positions_BT, deterministic)

  def __call__(self, x_BTE, segment_ids_BT, positions_BT, deterministic=True):
    return self.discriminator_predictions(self.encode(x_BTE, segment_ids_BT, positions_BT, deterministic))


class ElectraGenerator(nn.Module):
  """Encoder + MLM head; returns (h [.., E], lm_bias [V]): the caller applies the tied word embeddings and adds
  the bias. With `slots_BN` the head runs only at those positions (the original computes it at the N masked
  slots only)."""
  cfg: ElectraConfig

  def setup(self):
    self.encoder = ElectraEncoder(self.cfg)
    self.generator_predictions = GeneratorPredictions(self.cfg)
    self.lm_bias = self.param("lm_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                              (self.cfg.vocab_size,), jnp.float32)

  def encode(self, x_BTE, segment_ids_BT, positions_BT, deterministic=True):
    return self.encoder(x_BTE, segment_ids_BT, positions_BT, deterministic)

  def __call__(self, x_BTE, segment_ids_BT, positions_BT, slots_BN=None, deterministic=True):
    h_BTD = self.encode(x_BTE, segment_ids_BT, positions_BT, deterministic)
    if slots_BN is not None:
      h_BTD = jnp.take_along_axis(h_BTD, slots_BN[..., None], axis=1)
    return self.generator_predictions(h_BTD), self.lm_bias


class ElectraForPreTraining(nn.Module):
  """The discriminator alone (Hugging Face's ElectraForPreTraining): replaced-token logits [B, T]."""
  cfg: ElectraConfig

  def setup(self):
    self.embeddings = ElectraEmbeddings(self.cfg)
    self.discriminator = ElectraDiscriminator(self.cfg)

  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, attention_mask=None,
               token_type_ids=None, deterministic: bool = True):
    seg, pos = default_inputs(tokens_BT, segment_ids_BT, positions_BT, attention_mask)
    x_BTE = self.embeddings(tokens_BT, pos, token_type_ids, deterministic)
    return self.discriminator(x_BTE, seg, pos, deterministic)


class ElectraForMaskedLM(nn.Module):
  """The generator alone (Hugging Face's ElectraForMaskedLM), also our same-size masked-LM baseline.
  Returns float32 logits [B, T, V], or [B, N, V] at `slots_BN`."""
  cfg: ElectraConfig

  def setup(self):
    self.embeddings = ElectraEmbeddings(self.cfg)
    self.generator = ElectraGenerator(self.cfg)

  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, attention_mask=None,
               token_type_ids=None, slots_BN=None, deterministic: bool = True):
    seg, pos = default_inputs(tokens_BT, segment_ids_BT, positions_BT, attention_mask)
    x_BTE = self.embeddings(tokens_BT, pos, token_type_ids, deterministic)
    h, bias_V = self.generator(x_BTE, seg, pos, slots_BN, deterministic)
    return nn.with_logical_constraint(self.embeddings.attend(h) + bias_V, ("batch", "length", "vocab"))


class ElectraPretrainingModel(nn.Module):
  """Generator and discriminator in one module (and one train state), sharing `embeddings`.

  `cfg` is the discriminator's config; the generator is `cfg.generator()`. The objective calls the
  `generator_logits` and `discriminator_logits` methods, "[MASK]" filling `fill_logits` (there is no `__call__`).
  """
  cfg: ElectraConfig

  def setup(self):
    self.embeddings = ElectraEmbeddings(self.cfg)
    self.generator = ElectraGenerator(self.cfg.generator())
    self.discriminator = ElectraDiscriminator(self.cfg)

  def generator_logits(self, tokens_BT, segment_ids_BT, positions_BT, slots_BN=None, deterministic=True):
    x_BTE = self.embeddings(tokens_BT, positions_BT, None, deterministic)
    h, bias_V = self.generator(x_BTE, segment_ids_BT, positions_BT, slots_BN, deterministic)
    return self.embeddings.attend(h) + bias_V

  def fill_logits(self, tokens_BT, segment_ids_BT):
    """The generator's logits with positions counted from 0 in each row: the `apply_fn(variables, tokens,
    segment_ids)` interface of "[MASK]" filling (decode/fill_mask.py)."""
    seg_BT, pos_BT = default_inputs(tokens_BT, segment_ids_BT)
    return self.generator_logits(tokens_BT, seg_BT, pos_BT)

  def discriminator_logits(self, tokens_BT, segment_ids_BT, positions_BT, deterministic=True):
    x_BTE = self.embeddings(tokens_BT, positions_BT, None, deterministic)
    return self.discriminator(x_BTE, segment_ids_BT, positions_BT, deterministic)


class ElectraForSequenceClassification(nn.Module):
  """A tower's encoder + Hugging Face's ElectraClassificationHead (dense -> gelu -> out_proj, dropout around it).

  `tower` names the encoder to use ("discriminator" for ELECTRA; "generator" for the masked-LM baseline, whose
  checkpoint stores its encoder there) so that `checkpoint.init_from` finds the pretrained weights by path.
  pooling "cls" (Hugging Face: the first token) or "mean" (over real tokens).
  """
  cfg: ElectraConfig
  num_labels: int
  pooling: str = "cls"
  tower: str = "discriminator"

  @nn.compact
  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, attention_mask=None,
               token_type_ids=None, deterministic: bool = True):
    cfg, dt = self.cfg, self.cfg.compute_dtype
    seg, pos = default_inputs(tokens_BT, segment_ids_BT, positions_BT, attention_mask)
    x_BTE = ElectraEmbeddings(cfg, name="embeddings")(tokens_BT, pos, token_type_ids, deterministic)
    if self.tower not in ("discriminator", "generator"):
      raise ValueError(f"model.electra_tower={self.tower!r}: use 'discriminator' or 'generator'")
    tower_cls = ElectraDiscriminator if self.tower == "discriminator" else ElectraGenerator
    h_BTD = tower_cls(cfg, name=self.tower).encode(x_BTE, seg, pos, deterministic)
    x_BD = pool(h_BTD, seg, self.pooling)
    drop = nn.Dropout(cfg.dropout_rate)
    x_BD = Linear((cfg.hidden_size,), ("embed", None), use_bias=True, dtype=dt, kernel_init=_init(cfg),
                  name="classifier_dense")(drop(x_BD, deterministic=deterministic))
    x_BD = drop(activation("gelu")(x_BD), deterministic=deterministic)
    return Linear((self.num_labels,), (None, None), use_bias=True, dtype=dt, kernel_init=_init(cfg),
                  name="classifier_out_proj")(x_BD).astype(jnp.float32)

