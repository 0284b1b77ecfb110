"""Masked-LM objective (BERT-style corruption; ModernBERT pretrains at 30% masking)."""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from models.family import Objective
from models.losses import cross_entropy_with_accuracy, weighted_loss_and_metrics


@dataclasses.dataclass(frozen=True)
class MaskedLmObjective(Objective):
  """Selects `mask_rate` of the real tokens; of those 80% become [MASK], 10% a random token, 10% stay unchanged.

  Padding (segment id 0) and the special ids (CLS, SEP, PAD, MASK) are never selected. The loss is the mean
  cross-entropy over the selected positions. `prepare` runs once on the whole global batch and stores the
  weights already normalised by the batch's selected count, so that `loss` is additive over micro-batches
  (gradient accumulation gives the same gradient as one large batch).
  """
  vocab_size: int            # size of the real vocabulary; random replacements are drawn from [random_low, vocab_size)
  mask_id: int
  special_ids: tuple[int, ...]
  random_low: int = 0
  mask_rate: float = 0.3
  mask_token_frac: float = 0.8
  random_token_frac: float = 0.1

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    tokens_BT, segment_ids_BT = batch["tokens"], batch["segment_ids"]
    r_select, r_kind, r_token = jax.random.split(rng, 3)
    maskable = (segment_ids_BT > 0) & ~jnp.isin(tokens_BT, jnp.asarray(self.special_ids, tokens_BT.dtype))
    selected = maskable & (jax.random.uniform(r_select, tokens_BT.shape) < self.mask_rate)
    kind = jax.random.uniform(r_kind, tokens_BT.shape)
    random_tokens = jax.random.randint(r_token, tokens_BT.shape, self.random_low, self.vocab_size, tokens_BT.dtype)
    inputs = jnp.where(selected & (kind < self.mask_token_frac), self.mask_id, tokens_BT)
    use_random = (kind >= self.mask_token_frac) & (kind < self.mask_token_frac + self.random_token_frac)
    inputs = jnp.where(selected & use_random, random_tokens, inputs)
    weights = selected.astype(jnp.float32) / jnp.maximum(selected.sum(), 1).astype(jnp.float32)
    return {**batch, "inputs": inputs, "targets": tokens_BT, "weights": weights}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    del rng  # no dropout in ModernBERT's defaults
    logits_BTV = apply_fn({"params": params}, batch["inputs"], batch["segment_ids"], batch["positions"])
    nll_BT, correct_BT = cross_entropy_with_accuracy(logits_BTV, batch["targets"])
    return weighted_loss_and_metrics(nll_BT, correct_BT, batch["weights"])


@dataclasses.dataclass(frozen=True)
class SequenceClassificationObjective(Objective):
  """Cross-entropy of `labels` [B] given the sequence; every example weighs 1/B (additive over micro-batches)."""

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    del rng
    B = batch["labels"].shape[0]
    return {**batch, "weights": jnp.full((B,), 1.0 / B, jnp.float32)}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    del rng
    logits_BL = apply_fn({"params": params}, batch["tokens"], batch["segment_ids"], batch["positions"])
    nll_B, correct_B = cross_entropy_with_accuracy(logits_BL, batch["labels"])
    return weighted_loss_and_metrics(nll_B, correct_B, batch["weights"])
