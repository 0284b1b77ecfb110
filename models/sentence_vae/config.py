"""Sentence autoencoder / VAE hyperparameters."""
import dataclasses

from models.hparams import check_positive


@dataclasses.dataclass(frozen=True)
class SentenceVaeConfig:
  """variational=False: an autoencoder (z = the encoder's mean, no noise, no KL); True: a VAE (z = mu + sigma·eps,
  KL to N(0, I) weighted by the objective's warm-up). The decoder GRU starts from tanh(W z) and reads z beside
  every input token. Defaults (embed 32, GRU 96, latent 16): 87,706 (AE) / 89,258 (VAE) parameters
  at 42 ids, like configs/ariel.py's causal LM (103,808)."""
  vocab_size: int
  embed_dim: int = 32
  hidden_size: int = 96
  latent_dim: int = 16
  variational: bool = False

  def __post_init__(self):
    check_positive(self, "embed_dim", "hidden_size", "latent_dim")

  def matmul_params(self) -> int:
    e, h, z, v = self.embed_dim, self.hidden_size, self.latent_dim, self.vocab_size
    gru = lambda i: 3 * (i * h + h * h)  # noqa: E731
    return gru(e) + gru(e + z) + h * v + z * h + h * z * (2 if self.variational else 1)

  def flops_per_token(self, seq_len: int) -> float:
    del seq_len
    return 6.0 * self.matmul_params()
