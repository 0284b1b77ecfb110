"""Causal LM hyperparameters."""
import dataclasses

from models.causal_lm.lexical import EMBEDDINGS
from models.hparams import TransformerHparams, from_model_config


@dataclasses.dataclass(frozen=True)
class CausalLmConfig(TransformerHparams):
  """style="gpt2": learned absolute positions, LayerNorm with bias, biased projections, MLP with `activation`
  (GPT-2: "gelu_new", the tanh form), tied output embedding; defaults are GPT-2 small's shape.
  style="modern": RoPE (rope_theta), bias-free LayerNorm and projections, GeGLU MLP, tied output embedding.
  embedding: "learned" (the standard LM), "lexinvariant" or "semi" (models/causal_lm/lexical.py, with
  semi_fraction, lex_embed_std, lex_out_scale, lex_sample); pos_init_std: the learned position table's init
  (gpt2 style); num_special: ids below it are special (the vocabulary's first normal id; set by the builder);
  dropout_rate: GPT-2's embedding/attention/residual dropout (Hugging Face's default is 0.1; ours 0), active only
  where the objective calls the model with deterministic=False."""
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
  remat: str = "none"      # models/layers/remat.py: "none", "full", "dots_saveable", "offload"
  embedding: str = "learned"
  semi_fraction: float = 0.0
  lex_embed_std: str = "one"
  lex_out_scale: bool = True
  lex_sample: str = "present_types"
  pos_init_std: float = 0.01
  num_special: int = 4
  dropout_rate: float = 0.0


  def __post_init__(self):
    self.check_transformer("num_layers", "intermediate_size", "max_position_embeddings")
    if self.style not in ("gpt2", "modern"):
      raise ValueError(f"model.style={self.style!r}: use 'gpt2' or 'modern'")
    if self.embedding not in EMBEDDINGS:
      raise ValueError(f"model.embedding={self.embedding!r}: use one of {list(EMBEDDINGS)}")
    if not 0.0 <= self.semi_fraction <= 1.0:
      raise ValueError(f"model.semi_fraction={self.semi_fraction} must lie in [0, 1]")
    if self.semi_fraction and self.embedding != "semi":
      raise ValueError(f"model.semi_fraction={self.semi_fraction} is read only with model.embedding='semi' (now "
                       f"{self.embedding!r}); set one or the other")
    if (self.max_position_embeddings + 1) * self.vocab_size >= 2 ** 31 and self.embedding != "learned":
      raise ValueError("model.embedding: (document, token) type codes overflow int32 at this vocabulary and "
                       "max_position_embeddings; lower model.max_position_embeddings")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"model.dropout_rate={self.dropout_rate} must lie in [0, 1)")
    if self.dropout_rate and self.attention_impl not in ("einsum", "auto"):
      raise ValueError(f"model.dropout_rate={self.dropout_rate} drops attention probabilities in the 'einsum' kernel "
                       f"only; set model.attention_impl='einsum' (now {self.attention_impl!r})")

  @classmethod
  def from_config(cls, model_cfg, vocab_size: int, num_special: int = 4) -> "CausalLmConfig":
    return dataclasses.replace(from_model_config(cls, model_cfg, vocab_size), num_special=num_special)

  def matmul_params(self) -> int:
    d, i = self.hidden_size, self.intermediate_size
    mlp = 2 * d * i if self.style == "gpt2" else 3 * d * i
    return self.num_layers * (4 * d * d + mlp) + d * self.vocab_size

  def flops_per_token(self, seq_len: int, train: bool = True) -> float:
    """6·N + 12·L·S·d per trained token (attention counted dense, as executed). The lexinvariant readout does
    the same h·Eᵀ work over the vocabulary (full_vocab) or a T-wide one over the row's types (present_types, which
    the count does not add), so the same formula is used for every embedding mode."""
    fwd = 2 * self.matmul_params() + 4 * self.num_layers * seq_len * self.hidden_size
    return 3 * fwd if train else fwd
