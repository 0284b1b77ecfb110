"""Fine-tuning heads on the ModernBERT encoder, named as Hugging Face's (model, head, classifier)."""
import flax.linen as nn
import jax.numpy as jnp

from models.layers import Linear
from models.layers.inputs import default_inputs, pool
from models.modernbert.config import ModernBertConfig
from models.modernbert.model import ModernBertEncoder, ModernBertPredictionHead


class ModernBertForSequenceClassification(nn.Module):
  """Encoder -> pooling ("cls": first token; "mean": mean over real tokens) -> head -> classifier [B, labels]."""
  cfg: ModernBertConfig
  num_labels: int
  pooling: str = "cls"

  @nn.compact
  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, attention_mask=None):
    seg, pos = default_inputs(tokens_BT, segment_ids_BT, positions_BT, attention_mask)
    h_BTD = ModernBertEncoder(self.cfg, name="model")(tokens_BT, seg, pos)
    pooled_BD = ModernBertPredictionHead(self.cfg, name="head")(pool(h_BTD, seg, self.pooling))
    return Linear((self.num_labels,), ("embed", None), use_bias=True, dtype=self.cfg.compute_dtype,
                  kernel_init=nn.initializers.truncated_normal(self.cfg.hidden_size ** -0.5),
                  name="classifier")(pooled_BD).astype(jnp.float32)


class ModernBertForTokenClassification(nn.Module):
  """Encoder -> head -> classifier on every token [B, T, labels]."""
  cfg: ModernBertConfig
  num_labels: int

  @nn.compact
  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None, attention_mask=None):
    seg, pos = default_inputs(tokens_BT, segment_ids_BT, positions_BT, attention_mask)
    h_BTD = ModernBertEncoder(self.cfg, name="model")(tokens_BT, seg, pos)
    h_BTD = ModernBertPredictionHead(self.cfg, name="head")(h_BTD)
    return Linear((self.num_labels,), ("embed", None), use_bias=True, dtype=self.cfg.compute_dtype,
                  kernel_init=nn.initializers.truncated_normal(self.cfg.hidden_size ** -0.5),
                  name="classifier")(h_BTD).astype(jnp.float32)
