"""Next-token prediction within documents."""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from models.family import Objective
from models.losses import cross_entropy_with_accuracy, next_token_targets, weighted_loss_and_metrics


def _raw(key: jax.Array) -> jax.Array:
  return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


@dataclasses.dataclass(frozen=True)
class NextTokenObjective(Objective):
  """Cross-entropy of token t+1 given tokens <= t, wherever t and t+1 belong to the same document.

  Weights are normalised over the whole batch in `prepare` so that `loss` adds up over micro-batches.
  With `embed_keys` (the lexinvariant and semi-lexinvariant embeddings), `prepare` also gives every row of the
  global batch its own raw PRNG key, fold_in(prepare key, global row index), as batch["embed_keys"] [B, 2]
  uint32: micro-batches carry their rows' keys, so accumulation does not change the draws.
  """
  embed_keys: bool = False

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    tokens, seg = batch["tokens"], batch["segment_ids"]
    if self.embed_keys:
      rows = jnp.arange(tokens.shape[0])
      keys = jax.vmap(lambda r: _raw(jax.random.fold_in(rng, r)))(rows)
      batch = {**batch, "embed_keys": keys.astype(jnp.uint32)}
    targets, valid = next_token_targets(tokens, seg)
    weights = valid.astype(jnp.float32) / jnp.maximum(valid.sum(), 1).astype(jnp.float32)
    return {**batch, "inputs": tokens, "targets": targets, "weights": weights}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    del rng
    kwargs = {"embed_keys": batch["embed_keys"]} if self.embed_keys else {}
    logits = apply_fn({"params": params}, batch["inputs"], batch["segment_ids"], batch["positions"], **kwargs)
    nll, correct = cross_entropy_with_accuracy(logits, batch["targets"])
    return weighted_loss_and_metrics(nll, correct, batch["weights"])
