"""Fine-tuning heads on the ModernBERT encoder, named as Hugging Face's (model, head, classifier)."""
import flax.linen as nn
import jax.numpy as jnp

from models.layers import Linear
from models.modernbert.config import ModernBertConfig
from models.modernbert.model import ModernBertEncoder, ModernBertPredictionHead


def _segments(tokens_BT, segment_ids_BT, attention_mask):
  if segment_ids_BT is None:
    segment_ids_BT = jnp.ones_like(tokens_BT) if attention_mask is None else jnp.asarray(attention_mask, jnp.int32)
  return segment_ids_BT


class ModernBertForSequenceClassification(nn.Module):
  """Encoder -> pooling ("cls": first token; "mean": mean over real tokens) -> head -> classifier [B, labels]."""
  cfg: ModernBertConfig
  num_labels: int
  pooling: str = "cls"

  @nn.compact
  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, attention_mask=None):
    seg = _segments(tokens_BT, segment_ids_BT, attention_mask)
    h_BTD = ModernBertEncoder(self.cfg, name="model")(tokens_BT, seg, positions_BT)
    if self.pooling == "cls":
      pooled_BD = h_BTD[:, 0]
    elif self.pooling == "mean":
      real = (seg > 0)[..., None].astype(h_BTD.dtype)
      pooled_BD = jnp.sum(h_BTD * real, axis=1) / jnp.maximum(jnp.sum(real, axis=1), 1)
    else:
      raise ValueError(f"model.pooling={self.pooling!r}: use 'cls' or 'mean'")
    pooled_BD = ModernBertPredictionHead(self.cfg, name="head")(pooled_BD)
    return Linear((self.num_labels,), ("embed", None), use_bias=True, dtype=self.cfg.compute_dtype,
                  kernel_init=nn.initializers.truncated_normal(self.cfg.hidden_size ** -0.5),
                  name="classifier")(pooled_BD).astype(jnp.float32)


class ModernBertForTokenClassification(nn.Module):
  """Encoder -> head -> classifier on every token [B, T, labels]."""
  cfg: ModernBertConfig
  num_labels: int

  @nn.compact
  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, attention_mask=None):
    seg = _segments(tokens_BT, segment_ids_BT, attention_mask)
    h_BTD = ModernBertEncoder(self.cfg, name="model")(tokens_BT, seg, positions_BT)
    h_BTD = ModernBertPredictionHead(self.cfg, name="head")(h_BTD)
    return Linear((self.num_labels,), ("embed", None), use_bias=True, dtype=self.cfg.compute_dtype,
                  kernel_init=nn.initializers.truncated_normal(self.cfg.hidden_size ** -0.5),
                  name="classifier")(h_BTD).astype(jnp.float32)
