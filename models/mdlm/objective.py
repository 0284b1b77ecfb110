"""The MDLM objective: continuous-time NELBO of the absorbing-mask diffusion with the linear schedule.

Legend: B batch, T length, V vocabulary.

alpha_t = 1 - t. A row draws t ~ U[min_t, 1] (stratified over the global batch when `antithetic`: t_b = (u + b/B)
mod 1, MDLM's low-discrepancy sampler), masks each real token independently with probability t, and the NELBO is
E_t E_z [ (1/t) sum_{masked l} -log p(x_l | z_t) ] (spec §1: alpha'_t / (1 - alpha_t) = -1/t). Loss weightings
(`objective.loss_weighting`):
  "nelbo"        the bound itself, per real token: sum_b sum_l masked (1/t_b) CE / (real tokens in the batch); its
                 expectation is the NELBO in nats per token (an upper bound on the NLL per token, comparable with a
                 causal LM's validation loss).
  "masked_mean"  the mean CE over the masked positions (no 1/t; MaskGIT-style, lower variance, not a bound).
Weights are normalised over the whole global batch in `prepare`, so the loss adds up over micro-batches.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from models.family import Objective
from models.losses import cross_entropy_with_accuracy

LOSS_WEIGHTINGS = ("nelbo", "masked_mean")


def stratified_times(rng: jax.Array, batch: int, min_t: float, antithetic: bool = True) -> jax.Array:
  """t [B] in [min_t, 1]: one uniform shifted over a grid of B strata (antithetic), or B independent uniforms."""
  if antithetic:
    u_B = jnp.mod(jax.random.uniform(rng, ()) + jnp.arange(batch) / batch, 1.0)
  else:
    u_B = jax.random.uniform(rng, (batch,))
  return min_t + (1.0 - min_t) * u_B


@dataclasses.dataclass(frozen=True)
class MdlmObjective(Objective):
  mask_id: int
  special_ids: tuple[int, ...]        # never masked (CLS, SEP, PAD, MASK)
  loss_weighting: str = "nelbo"
  min_t: float = 1e-3
  antithetic: bool = True

  def __post_init__(self):
    if self.loss_weighting not in LOSS_WEIGHTINGS:
      raise ValueError(f"objective.loss_weighting={self.loss_weighting!r}: use one of {LOSS_WEIGHTINGS}")
    if not 0.0 < self.min_t < 1.0:
      raise ValueError(f"objective.min_t={self.min_t} must be in (0, 1)")

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    tokens_BT, segment_ids_BT = batch["tokens"], batch["segment_ids"]
    r_t, r_mask = jax.random.split(rng)
    B = tokens_BT.shape[0]
    t_B = stratified_times(r_t, B, self.min_t, self.antithetic)
    real_BT = (segment_ids_BT > 0) & ~jnp.isin(tokens_BT, jnp.asarray(self.special_ids, tokens_BT.dtype))
    masked_BT = real_BT & (jax.random.uniform(r_mask, tokens_BT.shape) < t_B[:, None])
    inputs_BT = jnp.where(masked_BT, self.mask_id, tokens_BT)
    m = masked_BT.astype(jnp.float32)
    num_masked = jnp.maximum(m.sum(), 1.0)
    if self.loss_weighting == "nelbo":
      weights_BT = m / t_B[:, None] / jnp.maximum(real_BT.sum(), 1).astype(jnp.float32)
      count_BT = real_BT.astype(jnp.float32)
    else:
      weights_BT, count_BT = m / num_masked, m
    return {**batch, "inputs": inputs_BT, "targets": tokens_BT, "weights": weights_BT,
            "accuracy_weights": m / num_masked, "count": count_BT}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    del rng
    logits_BTV = apply_fn({"params": params}, batch["inputs"], batch["segment_ids"], batch["positions"])
    nll_BT, correct_BT = cross_entropy_with_accuracy(logits_BTV, batch["targets"])
    nll_BT = jnp.where(batch["weights"] > 0, nll_BT, 0.0)     # unmasked targets are copied: CE 0 (SUBS)
    loss = jnp.sum(nll_BT * batch["weights"])
    return loss, {"loss": loss, "accuracy": jnp.sum(correct_BT * batch["accuracy_weights"]),
                  "num_targets": jnp.sum(batch["count"])}
