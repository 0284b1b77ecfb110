"""The AS-ARM training objective: the joint loss over random visible subsets plus the parallel (draft) loss."""
import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from models.asarm.masks import canonical_ranks
from models.family import Objective
from models.losses import cross_entropy_with_accuracy


@dataclasses.dataclass(frozen=True)
class AnySubsetObjective(Objective):
  """loss = joint NLL + parallel_weight * parallel NLL, both means over the batch's targets, in one forward pass.

  Each row hides num_predict = int(rate * N) positions chosen uniformly (at least 1); the order is canonical
  (visible ascending, then hidden ascending). Joint: the query at the i-th hidden position reads the visible
  tokens and the true tokens of the earlier hidden positions (teacher-forced chain of the joint). Parallel: a
  second query at every hidden position reads the visible tokens only: the conditionally independent draft
  distribution ASSD uses, which the joint loss alone never trains for i > first (the spec's §3.2).

  Masking-rate curriculum (the reference's): rates of a batch are stratified over [lo, hi] across its rows; lo and
  hi ramp linearly from `start_rate` to `final_min_rate` / `final_max_rate` over `rate_warmup_steps` steps
  (evaluation uses the final range). Query slots are padded to ceil(max rate * N) so shapes stay static.
  """
  start_rate: float = 0.15
  final_min_rate: float = 0.05
  final_max_rate: float = 0.95
  rate_warmup_steps: int = 500
  parallel_weight: float = 1.0

  def num_slots(self, N: int) -> int:
    return max(1, math.ceil(max(self.start_rate, self.final_max_rate, self.final_min_rate) * N))

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step: jax.Array | None = None
              ) -> dict[str, jax.Array]:
    tokens_BN = batch["tokens"]
    B, N = tokens_BN.shape
    T = self.num_slots(N)
    progress = 1.0 if step is None else jnp.minimum(step / max(self.rate_warmup_steps, 1), 1.0)
    lo = self.start_rate + (self.final_min_rate - self.start_rate) * progress
    hi = self.start_rate + (self.final_max_rate - self.start_rate) * progress
    r_rate, r_subset = jax.random.split(rng)
    u_B = (jnp.arange(B) + jax.random.uniform(r_rate, (B,))) / B          # stratified over the rows
    rate_B = lo + (hi - lo) * u_B
    valid_BN = batch["segment_ids"] > 0 if "segment_ids" in batch else jnp.ones((B, N), bool)
    n_pred_B = jnp.clip((rate_B * valid_BN.sum(1)).astype(jnp.int32), 1, T)
    score_BN = jnp.where(valid_BN, jax.random.uniform(r_subset, (B, N)), 2.0)   # padding is never hidden
    hidden_BN = jnp.argsort(jnp.argsort(score_BN, axis=-1), axis=-1) < n_pred_B[:, None]
    rank_BN = canonical_ranks(~hidden_BN)
    m_B = N - n_pred_B
    order_BN = jnp.argsort(rank_BN, axis=-1)                                # rank -> position
    slot_rank_BT = jnp.minimum(m_B[:, None] + jnp.arange(T)[None, :], N - 1)
    pos_BT = jnp.take_along_axis(order_BN, slot_rank_BT, axis=1)
    valid_BT = jnp.arange(T)[None, :] < n_pred_B[:, None]
    w_BT = valid_BT.astype(jnp.float32) / jnp.maximum(valid_BT.sum(), 1).astype(jnp.float32)
    return {**batch, "rank": rank_BN, "m": m_B, "valid": valid_BN,
            "query_pos": jnp.concatenate([pos_BT, pos_BT], axis=1),
            "query_limit": jnp.concatenate([slot_rank_BT, jnp.broadcast_to(m_B[:, None], (B, T))], axis=1),
            "query_targets": jnp.take_along_axis(tokens_BN, pos_BT, axis=1), "query_weights": w_BT}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    del rng
    logits = apply_fn({"params": params}, batch["tokens"], batch["rank"], batch["m"], batch["query_pos"],
                      batch["query_limit"], batch.get("segment_ids", batch["valid"]), batch.get("positions"))
    T = batch["query_targets"].shape[1]
    w = batch["query_weights"]
    nll_joint, correct = cross_entropy_with_accuracy(logits[:, :T], batch["query_targets"])
    nll_par, correct_par = cross_entropy_with_accuracy(logits[:, T:], batch["query_targets"])
    joint, parallel = jnp.sum(nll_joint * w), jnp.sum(nll_par * w)
    loss = joint + self.parallel_weight * parallel
    return loss, {"loss": loss, "joint_nll": joint, "parallel_nll": parallel, "accuracy": jnp.sum(correct * w),
                  "parallel_accuracy": jnp.sum(correct_par * w), "num_targets": jnp.sum(w > 0).astype(jnp.float32)}
