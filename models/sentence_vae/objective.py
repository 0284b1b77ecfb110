"""Reconstruction cross-entropy (+ KL for the VAE), per token, globally normalised like models/losses.py."""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from models.family import Objective
from models.losses import cross_entropy_with_accuracy, next_token_targets, weighted_loss_and_metrics


@dataclasses.dataclass(frozen=True)
class SentenceAutoencoderObjective(Objective):
  """loss = (sum of token NLLs + beta(step) · sum of per-sentence KL(q(z|s) || N(0, I))) / number of targets:
  the negative ELBO per token at beta = 1. beta rises linearly from 0 to 1 over `kl_warmup_steps` (Bowman et al.'s
  KL annealing against posterior collapse; 0 = beta 1 from the start). The autoencoder has no KL term.
  Metric `kl` is the mean KL per sentence (nats). `word_dropout` (Bowman et al.) replaces each decoder input word
  (not BOS) by `mask_id` with that probability during training, so the decoder must read z."""
  variational: bool = False
  kl_warmup_steps: int = 0
  latent_dim: int = 16
  word_dropout: float = 0.0
  mask_id: int = 3

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    tokens, seg = batch["tokens"], batch["segment_ids"]
    targets, valid = next_token_targets(tokens, seg)
    total = jnp.maximum(valid.sum(), 1).astype(jnp.float32)
    step = jnp.asarray(0 if step is None else step, jnp.float32)
    beta = jnp.minimum(1.0, step / self.kl_warmup_steps) if self.kl_warmup_steps else jnp.float32(1.0)
    rows = tokens.shape[0]
    r_drop, r_noise = jax.random.split(rng)
    drop = jax.random.bernoulli(r_drop, self.word_dropout, tokens.shape) & (seg > 0)
    drop = drop.at[:, 0].set(False)
    batch = {**batch, "decoder_inputs": jnp.where(drop, self.mask_id, tokens)}
    return {**batch, "targets": targets, "weights": valid.astype(jnp.float32) / total,
            "kl_weights": jnp.full((rows,), beta, jnp.float32) / total,
            "row_weights": jnp.full((rows,), 1.0 / rows, jnp.float32),
            # the posterior's noise, drawn for the whole batch: gradient accumulation changes no draw
            "noise": jax.random.normal(r_noise, (rows, self.latent_dim))}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    del rng
    logits, mu, logvar = apply_fn({"params": params}, batch["tokens"], batch["segment_ids"], batch["noise"],
                                  batch.get("decoder_inputs"))
    nll, correct = cross_entropy_with_accuracy(logits, batch["targets"])
    loss, metrics = weighted_loss_and_metrics(nll, correct, batch["weights"])
    if not self.variational:
      return loss, metrics
    kl_B = 0.5 * jnp.sum(mu ** 2 + jnp.exp(logvar) - 1.0 - logvar, axis=-1)
    loss = loss + jnp.sum(kl_B * batch["kl_weights"])
    return loss, {**metrics, "loss": loss, "kl": jnp.sum(kl_B * batch["row_weights"])}
