"""Replaced-token detection (ELECTRA) and the same-recipe masked-LM baseline.

Both objectives share `SlotMasking`, the original `pretrain_helpers.mask` recipe with N prediction slots per row:
the generator (or the baseline's MLM head) runs only at those slots. Following the repository convention, `prepare`
runs on the whole global batch and normalises every weight over it, so `loss` and the metrics add up over
micro-batches (gradient accumulation = one large batch).
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from models.electra.config import max_predictions
from models.family import Objective
from models.layers.categorical import inverse_cdf_categorical
from models.losses import cross_entropy_with_accuracy


@dataclasses.dataclass(frozen=True)
class SlotMasking:
  """Chooses num_to_predict = clip(round(mask_rate * real tokens), 1, N) positions per row, N =
  int((mask_rate + 0.005) * T), uniformly among real non-special tokens and **without replacement** (the
  original samples with replacement and collapses duplicates through a scatter quirk; without replacement every
  slot is a distinct position, which is what that recipe intends). Of the chosen positions `mask_token_frac`
  become [MASK], `random_token_frac` a random token, the rest keep the original. ELECTRA: 0.85 / 0 (the
  generator supplies replacements); BERT: 0.8 / 0.1.
  """
  mask_id: int
  special_ids: tuple[int, ...]
  vocab_size: int                # real vocabulary size: random tokens come from [random_low, vocab_size)
  random_low: int = 0
  mask_rate: float = 0.15
  mask_token_frac: float = 0.85
  random_token_frac: float = 0.0

  def __call__(self, tokens_BT, segment_ids_BT, rng) -> dict[str, jax.Array]:
    B, T = tokens_BT.shape
    N = max_predictions(T, self.mask_rate)
    r_pos, r_kind, r_tok = jax.random.split(rng, 3)
    real_BT = segment_ids_BT > 0
    candidate_BT = real_BT & ~jnp.isin(tokens_BT, jnp.asarray(self.special_ids, tokens_BT.dtype))
    scores_BT = jnp.where(candidate_BT, jax.random.uniform(r_pos, (B, T)), -1.0)
    _, slots_BN = jax.lax.top_k(scores_BT, N)                      # distinct positions, random order
    n_pred_B = jnp.clip(jnp.round(real_BT.sum(1) * self.mask_rate), 1, N).astype(jnp.int32)
    selected_BN = (jnp.arange(N)[None, :] < n_pred_B[:, None]) & jnp.take_along_axis(candidate_BT, slots_BN, 1)
    targets_BN = jnp.take_along_axis(tokens_BT, slots_BN, 1)
    kind_BN = jax.random.uniform(r_kind, (B, N))
    random_BN = jax.random.randint(r_tok, (B, N), self.random_low, self.vocab_size, tokens_BT.dtype)
    new_BN = jnp.where(kind_BN < self.mask_token_frac, self.mask_id, targets_BN)
    is_random = (kind_BN >= self.mask_token_frac) & (kind_BN < self.mask_token_frac + self.random_token_frac)
    new_BN = jnp.where(selected_BN & is_random, random_BN, new_BN)
    new_BN = jnp.where(selected_BN, new_BN, targets_BN)
    inputs_BT = scatter_rows(tokens_BT, slots_BN, new_BN)
    return {"inputs": inputs_BT, "slots": slots_BN, "slot_targets": targets_BN, "selected": selected_BN}


def scatter_rows(x_BT: jax.Array, slots_BN: jax.Array, values_BN: jax.Array) -> jax.Array:
  """x with x[b, slots[b, n]] = values[b, n] (slots distinct within a row)."""
  rows_BN = jnp.broadcast_to(jnp.arange(x_BT.shape[0])[:, None], slots_BN.shape)
  return x_BT.at[rows_BN, slots_BN].set(values_BN.astype(x_BT.dtype))


def _normalised(mask: jax.Array) -> jax.Array:
  mask = mask.astype(jnp.float32)
  return mask / jnp.maximum(mask.sum(), 1.0)


@dataclasses.dataclass(frozen=True)
class ReplacedTokenDetectionObjective(Objective):
  """loss = gen_weight * L_mlm + disc_weight * L_disc (1 and 50 in the paper).

  The generator predicts the masked slots (mean cross-entropy over the chosen slots of the batch); a replacement is
  sampled at every chosen slot from the generator's softmax at `temperature` (by inverse CDF,
  models/layers/categorical.py: the law of `jax.random.categorical` at one uniform per slot instead of Gumbel noise
  over the whole vocabulary, which was about 4.5% of the float32 step's op time on CPU; on stop_gradient logits: no
  gradient reaches the generator through sampling); the discriminator labels every real token (CLS/SEP included,
  padding excluded) original or replaced, and a sample equal to the original counts as original. Logged: loss,
  mlm_loss, disc_loss, accuracy (the generator's MLM accuracy), disc_accuracy, disc_accuracy_replaced,
  disc_accuracy_original, replaced_frac (of real tokens).
  """
  masking: SlotMasking
  gen_weight: float = 1.0
  disc_weight: float = 50.0
  temperature: float = 1.0
  dropout: bool = False          # apply the model's dropout (training); evaluation turns it off

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    r_mask, r_sample = jax.random.split(rng)
    m = self.masking(batch["tokens"], batch["segment_ids"], r_mask)
    # the generator's draws are one uniform per slot, drawn here for the whole batch: micro-batching (gradient
    # accumulation) then changes no replacement
    return {**batch, **m, "mlm_weights": _normalised(m["selected"]),
            "disc_weights": _normalised(batch["segment_ids"] > 0),
            "sample_uniform": jax.random.uniform(r_sample, m["slots"].shape, jnp.float32)}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    r_gen, r_disc = jax.random.split(rng)
    tokens_BT, seg_BT, pos_BT = batch["tokens"], batch["segment_ids"], batch["positions"]
    det = not self.dropout
    logits_BNV = apply_fn({"params": params}, batch["inputs"], seg_BT, pos_BT, batch["slots"], det,
                          method="generator_logits", rngs={"dropout": r_gen})
    nll_BN, correct_BN = cross_entropy_with_accuracy(logits_BNV, batch["slot_targets"])
    mlm_loss = jnp.sum(nll_BN * batch["mlm_weights"])
    sampled_BN = inverse_cdf_categorical(None, jax.lax.stop_gradient(logits_BNV) / self.temperature,
                                         uniform=batch["sample_uniform"])
    sampled_BN = jnp.where(batch["selected"], sampled_BN, batch["slot_targets"])
    fake_BT = scatter_rows(tokens_BT, batch["slots"], sampled_BN)
    is_fake_BT = fake_BT != tokens_BT
    disc_BT = apply_fn({"params": params}, fake_BT, seg_BT, pos_BT, det, method="discriminator_logits",
                       rngs={"dropout": r_disc})
    xent_BT = optax.sigmoid_binary_cross_entropy(disc_BT, is_fake_BT.astype(jnp.float32))
    w_BT = batch["disc_weights"]
    disc_loss = jnp.sum(xent_BT * w_BT)
    loss = self.gen_weight * mlm_loss + self.disc_weight * disc_loss
    says_fake = disc_BT > 0
    metrics = {"loss": loss, "mlm_loss": mlm_loss, "disc_loss": disc_loss,
               "accuracy": jnp.sum(correct_BN * batch["mlm_weights"]),
               "disc_accuracy": jnp.sum((says_fake == is_fake_BT) * w_BT),
               "replaced_frac": jnp.sum(is_fake_BT * w_BT),
               "disc_replaced_hits": jnp.sum((says_fake & is_fake_BT) * w_BT),
               "disc_original_hits": jnp.sum((~says_fake & ~is_fake_BT) * w_BT),
               "num_targets": jnp.sum(batch["mlm_weights"] > 0).astype(jnp.float32)}
    return loss, metrics

  def finalize_metrics(self, m: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Ratios computed after the micro-batches are summed (the per-class accuracies are not additive)."""
    m = dict(m)
    hits_r, hits_o, frac = m.pop("disc_replaced_hits"), m.pop("disc_original_hits"), m["replaced_frac"]
    m["disc_accuracy_replaced"] = hits_r / jnp.maximum(frac, 1e-9)
    m["disc_accuracy_original"] = hits_o / jnp.maximum(1.0 - frac, 1e-9)
    return m


@dataclasses.dataclass(frozen=True)
class SlotMaskedLmObjective(Objective):
  """The masked-LM baseline on the same slots (BERT: masking.mask_token_frac 0.8, random_token_frac 0.1): mean
  cross-entropy over the chosen slots, the head run only there. Works with `ElectraForMaskedLM`."""
  masking: SlotMasking
  dropout: bool = False

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    m = self.masking(batch["tokens"], batch["segment_ids"], rng)
    return {**batch, **m, "mlm_weights": _normalised(m["selected"])}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    logits_BNV = apply_fn({"params": params}, batch["inputs"], batch["segment_ids"], batch["positions"],
                          slots_BN=batch["slots"], deterministic=not self.dropout, rngs={"dropout": rng})
    nll_BN, correct_BN = cross_entropy_with_accuracy(logits_BNV, batch["slot_targets"])
    loss = jnp.sum(nll_BN * batch["mlm_weights"])
    return loss, {"loss": loss, "mlm_loss": loss, "accuracy": jnp.sum(correct_BN * batch["mlm_weights"]),
                  "num_targets": jnp.sum(batch["mlm_weights"] > 0).astype(jnp.float32)}
