"""ModernBERT hyperparameters as a frozen dataclass (modules never read a ConfigDict)."""
import dataclasses

from models.hparams import TransformerHparams, from_model_config
from models.layers.attention import use_banded
from models.layers.splash import executed_keys


@dataclasses.dataclass(frozen=True)
class ModernBertConfig(TransformerHparams):
  """Defaults are ModernBERT-base except the vocabulary, which comes from the data pipeline's vocabulary.

  `local_attention` is the *total* window (128 in the released models): local layers attend |i - j| <= 64.
  Layer i is global iff i % global_attn_every_n_layers == 0 (Hugging Face's convention).
  """
  vocab_size: int
  hidden_size: int = 768
  num_layers: int = 22
  num_heads: int = 12
  intermediate_size: int = 1152
  global_attn_every_n_layers: int = 3
  local_attention: int = 128
  global_rope_theta: float = 160_000.0
  local_rope_theta: float = 10_000.0
  norm_eps: float = 1e-5
  hidden_activation: str = "gelu"
  classifier_activation: str = "gelu"
  initializer_range: float = 0.02
  max_position_embeddings: int = 8192   # informational (RoPE has no table); kept for Hugging Face export
  layer_types: tuple[str, ...] | None = None   # explicit "full_attention"/"sliding_attention" per layer (HF v5)
  dtype: str = "float32"   # compute dtype; parameters are always float32
  attention_impl: str = "auto"   # "auto", "chunked", "einsum", "xla", "cudnn" or "splash" (models/layers/attention.py)
  remat: str = "none"      # per layer in the backward pass: "none", "full", "dots_saveable", "offload" (layers/remat.py)

  def __post_init__(self):
    self.check_transformer("num_layers", "intermediate_size", "global_attn_every_n_layers", "local_attention")
    if self.layer_types is not None:
      object.__setattr__(self, "layer_types", tuple(self.layer_types))
      if len(self.layer_types) != self.num_layers or set(self.layer_types) - {"full_attention", "sliding_attention"}:
        raise ValueError(f"layer_types {self.layer_types} must list num_layers={self.num_layers} entries of "
                         "'full_attention' / 'sliding_attention'")

  @property
  def half_window(self) -> int:
    return self.local_attention // 2

  def is_global(self, layer: int) -> bool:
    if self.layer_types is not None:
      return self.layer_types[layer] == "full_attention"
    return layer % self.global_attn_every_n_layers == 0

  @classmethod
  def from_config(cls, model_cfg, vocab_size: int) -> "ModernBertConfig":
    return from_model_config(cls, model_cfg, vocab_size)

  def matmul_params(self) -> int:
    """Parameters used in matmuls per token (tied decoder counted once, embedding lookup excluded)."""
    d, i = self.hidden_size, self.intermediate_size
    return self.num_layers * (4 * d * d + 3 * d * i) + d * d + d * self.vocab_size

  def attention_keys(self, layer: int, seq_len: int, count: str = "executed") -> float:
    """Keys per query of one layer's attention. "dense": every key (S); "window": the keys a sliding-window layer
    reads (min(S, 2w + 1)); "executed": what our kernel computes (banded layers: blocks of C = w rows against 3C
    keys, T padded to a multiple of C; splash: the key blocks its mask touches; dense kernels, and "auto" where
    T <= 4C (attention.use_banded): S)."""
    if self.is_global(layer) or count == "dense":
      return seq_len
    if count == "window":
      return min(seq_len, 2 * self.half_window + 1)
    if count != "executed":
      raise ValueError(f"count={count!r}: use 'dense', 'window' or 'executed'")
    if self.attention_impl == "splash":   # the key blocks the kernel reads ("auto" on TPU too; counted as on CPU)
      return executed_keys(seq_len, False, self.half_window)
    if self.attention_impl not in ("auto", "chunked") or (
        self.attention_impl == "auto" and not use_banded(seq_len, self.half_window)):
      return seq_len
    c = max(self.half_window, 1)
    return 3 * c * (-(-seq_len // c) * c) / seq_len

  def flops_per_token(self, seq_len: int, train: bool = True, count: str = "executed",
                      head_rows: float = 1.0) -> float:
    """Matmul FLOPs per token, 6·N + 12·S_keys·d summed over layers for a training step. count="executed" (the
    trainer's MFU) counts the attention FLOPs our kernels run (banded sliding-window layers: 3w keys per query);
    "dense" counts S keys in every layer, as a dense reference executes them; "window" the 2w + 1 keys a
    sliding-window layer needs (attention_keys). head_rows: the fraction of positions the MLM head (dense layer and
    tied decoder) runs on (the masked-LM objective's sparse head: its slots per row / T)."""
    keys = sum(self.attention_keys(i, seq_len, count) for i in range(self.num_layers))
    head = self.hidden_size * (self.hidden_size + self.vocab_size)
    fwd = 2 * (self.matmul_params() - (1 - head_rows) * head) + 4 * keys * self.hidden_size
    return 3 * fwd if train else fwd
