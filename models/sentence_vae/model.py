"""GRU sentence autoencoder: encode(tokens) -> latent statistics; a decoder conditioned on z, teacher-forced for
training and stepped one token at a time for generation (decode/latent.py). Legend: B batch, T tokens, E embedding,
H GRU width, Z latent, V vocabulary."""
import flax.linen as nn
import jax.numpy as jnp

from models.sentence_vae.config import SentenceVaeConfig


class SentenceAutoencoder(nn.Module):
  cfg: SentenceVaeConfig

  def setup(self):
    c = self.cfg
    self.embed = nn.Embed(c.vocab_size, c.embed_dim)
    self.encoder_cell = nn.GRUCell(features=c.hidden_size)
    self.to_latent = nn.Dense(c.latent_dim * (2 if c.variational else 1))
    self.to_hidden = nn.Dense(c.hidden_size)
    self.decoder_cell = nn.GRUCell(features=c.hidden_size)
    self.readout = nn.Dense(c.vocab_size)

  def encode(self, tokens_BT, segment_ids_BT):
    """(mu [B, Z], log-variance [B, Z]; zeros for the autoencoder): the GRU's state after each row's last real
    token (padding, segment id 0, leaves the state unchanged)."""
    x_BTE = self.embed(tokens_BT)
    h_BH = jnp.zeros((tokens_BT.shape[0], self.cfg.hidden_size), x_BTE.dtype)
    for t in range(tokens_BT.shape[1]):
      new, _ = self.encoder_cell(h_BH, x_BTE[:, t])
      h_BH = jnp.where(segment_ids_BT[:, t, None] > 0, new, h_BH)
    stats = self.to_latent(h_BH)
    if not self.cfg.variational:
      return stats, jnp.zeros_like(stats)
    mu, logvar = jnp.split(stats, 2, axis=-1)
    return mu, logvar

  def decoder_init(self, z_BZ):
    return jnp.tanh(self.to_hidden(z_BZ))

  def decoder_step(self, h_BH, z_BZ, tokens_B):
    """One decoder step: (next-token logits [B, V], new state)."""
    h_BH, y_BH = self.decoder_cell(h_BH, jnp.concatenate([self.embed(tokens_B), z_BZ], axis=-1))
    return self.readout(y_BH), h_BH

  def __call__(self, tokens_BT, segment_ids_BT, noise_BZ, decoder_inputs_BT=None):
    """Teacher forcing: logits [B, T, V] of token t+1 given tokens <= t and z, with mu and log-variance.
    z = mu + exp(logvar / 2) · noise for the VAE, mu for the autoencoder. `decoder_inputs_BT` (default: the
    tokens) is what the decoder reads, e.g. with word dropout."""
    mu, logvar = self.encode(tokens_BT, segment_ids_BT)
    z = mu + jnp.exp(0.5 * logvar) * noise_BZ if self.cfg.variational else mu
    inputs = tokens_BT if decoder_inputs_BT is None else decoder_inputs_BT
    return self.decode_teacher_forced(inputs, z), mu, logvar

  def decode_teacher_forced(self, tokens_BT, z_BZ):
    """Logits [B, T, V] of token t+1 given tokens <= t and z."""
    h, logits = self.decoder_init(z_BZ), []
    for t in range(tokens_BT.shape[1]):
      out, h = self.decoder_step(h, z_BZ, tokens_BT[:, t])
      logits.append(out)
    return jnp.stack(logits, axis=1).astype(jnp.float32)
