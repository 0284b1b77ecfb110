"""Masked-LM objective (BERT-style corruption; ModernBERT pretrains at 30% masking)."""
import dataclasses
import math
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

  At most `max_predictions(T)` positions of a row are selected (BERT's `max_predictions_per_seq`): by default the
  selected count's mean plus 4 standard deviations, rounded up to a multiple of 8 (64 of 128 positions at 30%,
  200 of 512; a row exceeds it with probability about 3e-5); a row that draws more keeps a uniformly random
  subset of that size (the ones with the smallest selection uniforms), the others stay unselected and unchanged.
  With `max_predictions_per_row` set, that number instead (None: the default; the cap never exceeds T).

  `sparse_head` (config `objective.sparse_head`, default True): the MLM head and the vocabulary decoder run only
  at those slots (as ModernBERT was pretrained; Hugging Face's `sparse_prediction`): the same loss and gradient as
  the dense head (tests/models/test_models.py), without the head's work at the other positions.
  """
  vocab_size: int            # size of the real vocabulary; random replacements are drawn from [random_low, vocab_size)
  mask_id: int
  special_ids: tuple[int, ...]
  random_low: int = 0
  mask_rate: float = 0.3
  mask_token_frac: float = 0.8
  random_token_frac: float = 0.1
  sparse_head: bool = True
  max_predictions_per_row: int | None = None

  def max_predictions(self, seq_len: int) -> int:
    """The most positions of a row of `seq_len` that are selected."""
    if self.max_predictions_per_row is not None:
      return min(self.max_predictions_per_row, seq_len)
    mean, var = seq_len * self.mask_rate, seq_len * self.mask_rate * (1 - self.mask_rate)
    return min(-(-math.ceil(mean + 4 * math.sqrt(var)) // 8) * 8, seq_len)

  def prediction_slots(self, seq_len: int) -> int | None:
    """Head rows per sequence with the sparse head (None: the dense head, which runs at every position)."""
    slots = self.max_predictions(seq_len)
    return slots if self.sparse_head and slots < seq_len else None

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    tokens_BT, segment_ids_BT = batch["tokens"], batch["segment_ids"]
    r_select, r_kind, r_token = jax.random.split(rng, 3)
    maskable = (segment_ids_BT > 0) & ~jnp.isin(tokens_BT, jnp.asarray(self.special_ids, tokens_BT.dtype))
    u_BT = jax.random.uniform(r_select, tokens_BT.shape)
    selected = maskable & (u_BT < self.mask_rate)
    M = self.max_predictions(tokens_BT.shape[1])
    if M < tokens_BT.shape[1]:   # keep the M selected positions of smallest u: a uniformly random subset
      rank_BT = jnp.argsort(jnp.argsort(jnp.where(selected, u_BT, 2.0), axis=1), axis=1)
      selected &= rank_BT < M
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
    inputs = (batch["inputs"], batch["segment_ids"], batch["positions"])
    targets_BT, weights_BT = batch["targets"], batch["weights"]
    M = self.prediction_slots(targets_BT.shape[1])
    if M is None:
      nll_BT, correct_BT = cross_entropy_with_accuracy(apply_fn({"params": params}, *inputs), targets_BT)
      return weighted_loss_and_metrics(nll_BT, correct_BT, weights_BT)
    # Each row's (at most M, by `prepare`) selected positions first, in order, then unselected ones of weight 0.
    at_BM = jnp.argsort(weights_BT <= 0, axis=1, stable=True)[:, :M].astype(jnp.int32)
    logits_BMV = apply_fn({"params": params}, *inputs, predict_at_BM=at_BM)
    nll_BM, correct_BM = cross_entropy_with_accuracy(logits_BMV, jnp.take_along_axis(targets_BT, at_BM, axis=1))
    return weighted_loss_and_metrics(nll_BM, correct_BM, jnp.take_along_axis(weights_BT, at_BM, axis=1))


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
