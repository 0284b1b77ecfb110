"""Sentence autoencoder and VAE (GRU encoder and decoder around a d-dimensional latent): the baselines AriEL is
compared with (ariel.md §4-§6, tests A9)."""
from models.sentence_vae.config import SentenceVaeConfig
from models.sentence_vae.model import SentenceAutoencoder
from models.sentence_vae.objective import SentenceAutoencoderObjective

__all__ = ["SentenceAutoencoder", "SentenceAutoencoderObjective", "SentenceVaeConfig"]
