"""The MDLM denoiser: a bidirectional ModernBERT encoder and masked-LM head under the SUBS parameterisation.

Legend: B batch, T length, D hidden, V vocabulary (padded to model.vocab_multiple).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers import matmul
from models.modernbert.config import ModernBertConfig
from models.modernbert.model import ModernBertEncoder, ModernBertPredictionHead


def subs_logits(logits_BTV: jax.Array, tokens_BT: jax.Array, *, mask_id: int, vocab_limit: int) -> jax.Array:
  """SUBS (spec §1): the mask id and the padded ids >= vocab_limit get -inf (never predicted), and every unmasked
  position is copied through (all mass on its own token), so p(x | z) only has freedom where z is masked."""
  ids_V = jnp.arange(logits_BTV.shape[-1])
  logits_BTV = jnp.where((ids_V == mask_id) | (ids_V >= vocab_limit), -jnp.inf, logits_BTV.astype(jnp.float32))
  copied_BTV = jnp.where(ids_V == tokens_BT[..., None], 0.0, -jnp.inf)
  return jnp.where((tokens_BT == mask_id)[..., None], logits_BTV, copied_BTV)


class MaskedDiffusionLM(nn.Module):
  """tokens [B, T] with mask ids -> SUBS logits [B, T, V] (float32). No time input: under SUBS with an absorbing
  mask the optimal denoiser does not depend on t (MDLM §3), so samplers may reuse logits when nothing changed.

  Parameter names are ModernBertForMaskedLM's (`model`, `head`, `decoder_bias`), so a ModernBERT checkpoint is a
  valid initialisation. `hidden` / `logits_from_hidden` / `embed` split the forward pass for ADJUST, which reuses
  the frozen token embedding and output head on its own hidden states.
  """
  cfg: ModernBertConfig
  mask_id: int
  vocab_limit: int     # ids at and above it are padding of the embedding table

  def setup(self):
    cfg = self.cfg
    self.model = ModernBertEncoder(cfg)
    self.head = ModernBertPredictionHead(cfg)
    self.decoder_bias = self.param("decoder_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                                   (cfg.vocab_size,), jnp.float32)

  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None):
    return self.logits_from_hidden(self.hidden(tokens_BT, segment_ids_BT, positions_BT), tokens_BT)

  def hidden(self, tokens_BT, segment_ids_BT=None, positions_BT=None):
    """The encoder's last hidden state [B, T, D] (after its final norm)."""
    return self.model(tokens_BT, segment_ids_BT, positions_BT)

  def logits_from_hidden(self, h_BTD, tokens_BT):
    logits_BTV = matmul.add_bias(self.model.attend(self.head(h_BTD)), self.decoder_bias, self.cfg.compute_dtype)
    logits_BTV = nn.with_logical_constraint(logits_BTV, ("batch", "length", "vocab"))
    return subs_logits(logits_BTV, tokens_BT, mask_id=self.mask_id, vocab_limit=self.vocab_limit)

  def embed(self, tokens_BT):
    """The raw token embeddings [B, T, D] (before the embedding norm)."""
    return self.model.embeddings.tok_embeddings(tokens_BT)
