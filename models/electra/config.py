"""ELECTRA hyperparameters (Clark et al., ICLR 2020) as a frozen dataclass, for either backbone.

One `ElectraConfig` describes one tower (the discriminator, or a generator); `generator()` derives the generator of
the joint model by the original `run_pretraining.get_generator_config` rule.
"""
import dataclasses

from models.hparams import TransformerHparams, from_model_config

BACKBONES = ("classic", "modernbert")


@dataclasses.dataclass(frozen=True)
class ElectraConfig(TransformerHparams):
  """Defaults are ELECTRA-small's discriminator (Hugging Face `ElectraConfig` defaults) except the vocabulary.

  backbone "classic": BERT post-norm blocks with learned absolute positions and token types, LayerNorm with bias,
  eps 1e-12, exact-erf GELU (as `transformers`' ElectraModel). backbone "modernbert": the towers are ModernBERT
  layers (pre-norm, RoPE, GeGLU, alternating global/sliding-window attention, no biases) around the same shared
  embeddings, projection and heads; the `modernbert_*`, `local_attention` and rope keys apply to it only.

  Generator sizing (the original's rule): hidden = round(hidden_size * generator_hidden_size), layers =
  round(num_layers * generator_layers), heads = max(1, hidden // 64), intermediate = 4 * hidden (classic) or the
  discriminator's intermediate scaled by the same fraction (modernbert). The embedding width E is shared.
  """
  vocab_size: int
  embedding_size: int = 128
  hidden_size: int = 256
  num_layers: int = 12
  num_heads: int = 4
  intermediate_size: int = 1024
  hidden_act: str = "gelu"
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  dropout_rate: float = 0.0          # hidden dropout (embeddings, attention output, MLP output); ELECTRA used 0.1
  generator_hidden_size: float = 0.25
  generator_layers: float = 1.0
  backbone: str = "classic"
  # ModernBERT backbone only:
  global_attn_every_n_layers: int = 3
  local_attention: int = 128
  global_rope_theta: float = 160_000.0
  local_rope_theta: float = 10_000.0
  dtype: str = "float32"
  attention_impl: str = "auto"
  remat: str = "none"      # models/layers/remat.py

  def __post_init__(self):
    self.check_transformer("num_layers", "intermediate_size", "embedding_size", "max_position_embeddings")
    if self.backbone not in BACKBONES:
      raise ValueError(f"model.backbone={self.backbone!r}: use one of {BACKBONES}")
    if not 0 < self.generator_hidden_size <= 1 or not 0 < self.generator_layers <= 1:
      raise ValueError("model.generator_hidden_size and model.generator_layers are fractions in (0, 1] of the "
                       f"discriminator (got {self.generator_hidden_size}, {self.generator_layers})")

  @property
  def has_projection(self) -> bool:
    """`embeddings_project` (E -> hidden) exists iff the widths differ."""
    return self.embedding_size != self.hidden_size

  @property
  def norm_eps(self) -> float:
    return self.layer_norm_eps if self.backbone == "classic" else 1e-5

  @property
  def norm_bias(self) -> bool:
    return self.backbone == "classic"

  def generator(self) -> "ElectraConfig":
    hidden = int(round(self.hidden_size * self.generator_hidden_size))
    layers = max(1, int(round(self.num_layers * self.generator_layers)))
    heads = max(1, hidden // 64)
    if self.backbone == "classic":
      intermediate = 4 * hidden
    else:
      intermediate = int(round(self.intermediate_size * self.generator_hidden_size))
    return dataclasses.replace(self, hidden_size=hidden, num_layers=layers, num_heads=heads,
                               intermediate_size=intermediate, generator_hidden_size=1.0, generator_layers=1.0)

  def modernbert(self):
    """The ModernBERT layer hyperparameters of this tower (modernbert backbone)."""
    from models.modernbert import ModernBertConfig
    return ModernBertConfig(
        vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
        num_heads=self.num_heads, intermediate_size=self.intermediate_size,
        global_attn_every_n_layers=self.global_attn_every_n_layers, local_attention=self.local_attention,
        global_rope_theta=self.global_rope_theta, local_rope_theta=self.local_rope_theta,
        hidden_activation=self.hidden_act, initializer_range=self.initializer_range, dtype=self.dtype,
        attention_impl=self.attention_impl, remat=self.remat)

  @classmethod
  def from_config(cls, model_cfg, vocab_size: int) -> "ElectraConfig":
    return from_model_config(cls, model_cfg, vocab_size)

  # ---- FLOP model (spec §7): N_mm = parameters used in matmuls per token; attention 4·L·S·d per forward ----
  def encoder_matmul_params(self) -> int:
    d, i = self.hidden_size, self.intermediate_size
    per_layer = 4 * d * d + (2 if self.backbone == "classic" else 3) * d * i
    return self.num_layers * per_layer + (self.embedding_size * d if self.has_projection else 0)

  def attention_flops(self, seq_len: int) -> int:
    if self.backbone == "classic":
      keys = self.num_layers * seq_len
    else:
      mb = self.modernbert()
      keys = sum(seq_len if mb.is_global(i) else min(seq_len, mb.local_attention + 1) for i in range(self.num_layers))
    return 4 * keys * self.hidden_size

  def discriminator_flops_per_token(self, seq_len: int) -> float:
    """Training FLOPs per token of the discriminator (encoder + head dense(d, d) + dense(d, 1))."""
    d = self.hidden_size
    fwd = 2 * (self.encoder_matmul_params() + d * d + d) + self.attention_flops(seq_len)
    return 3 * fwd

  def mlm_flops_per_token(self, seq_len: int, predicted_fraction: float) -> float:
    """Training FLOPs per token of this tower as a masked LM whose head runs on `predicted_fraction` of tokens."""
    E, d = self.embedding_size, self.hidden_size
    head = 2 * (d * E + E * self.vocab_size) * predicted_fraction
    return 3 * (2 * self.encoder_matmul_params() + self.attention_flops(seq_len) + head)

  def flops_per_token(self, seq_len: int, mask_rate: float = 0.15) -> float:
    """Training FLOPs per token of the joint step: generator (head on the masked slots) + discriminator.
    The Gumbel sampling adds no matmul FLOPs."""
    frac = max_predictions(seq_len, mask_rate) / seq_len
    return self.generator().mlm_flops_per_token(seq_len, frac) + self.discriminator_flops_per_token(seq_len)


def max_predictions(seq_len: int, mask_rate: float) -> int:
  """N, the number of prediction slots per row: int((mask_rate + 0.005) * seq_len), as the original."""
  return max(1, int((mask_rate + 0.005) * seq_len))
