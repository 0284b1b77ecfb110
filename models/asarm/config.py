"""Any-subset autoregressive model hyperparameters (Guo & Ermon, arXiv 2504.20456) as a frozen dataclass."""
import dataclasses

from models.hparams import TransformerHparams, from_model_config


@dataclasses.dataclass(frozen=True)
class AsArmConfig(TransformerHparams):
  """A pre-norm RoPE transformer (GeGLU MLP, LayerNorm without bias) run as the one-stream AS-ARM.

  `mask_id` is the token fed at positions whose content is not revealed; it is never sampled.
  """
  vocab_size: int
  mask_id: int = 3
  hidden_size: int = 256
  num_layers: int = 4
  num_heads: int = 4
  intermediate_size: int = 512
  rope_theta: float = 10_000.0
  norm_eps: float = 1e-5
  hidden_activation: str = "gelu"
  initializer_range: float = 0.02
  dtype: str = "float32"
  remat: str = "none"      # models/layers/remat.py

  def __post_init__(self):
    self.check_transformer("num_layers", "intermediate_size")
    if not 0 <= self.mask_id < self.vocab_size:
      raise ValueError(f"mask_id={self.mask_id} is outside the vocabulary [0, {self.vocab_size})")

  @classmethod
  def from_config(cls, model_cfg, vocab_size: int, mask_id: int) -> "AsArmConfig":
    cfg = from_model_config(cls, model_cfg, vocab_size)
    return dataclasses.replace(cfg, mask_id=mask_id)

  def flops_per_token(self, content_len: int, num_queries: int) -> float:
    """Training FLOPs per content token of one pass over content_len content + num_queries query tokens."""
    d, i = self.hidden_size, self.intermediate_size
    L = content_len + num_queries
    per_token = 2 * self.num_layers * (4 * d * d + 3 * d * i) + 4 * self.num_layers * L * d
    head = 2 * d * d + 2 * d * self.vocab_size      # only query tokens go through the head
    return 3 * (L * per_token + num_queries * head) / content_len
