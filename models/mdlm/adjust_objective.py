"""ADJUST's objective (spec §5.2): forward KL from the frozen base's exact next-step conditionals, on windows of
the base's own one-token-per-call trajectories, at an unroll depth drawn per example.

Legend: B batch, T length, V vocabulary, S max depth (AdjustConfig.max_depth).

A trajectory is (tokens [T], order [T]): the filled row and the call at which each position was revealed (-1:
given from the start; decode/diffusion.py unmask_sample(return_order=True) writes them). State s_j reveals the
positions with order < j. Per example: D ~ 1 + Categorical(softmax([0.5^0, ..., 0.5^(S-1)])) (clipped to the
trajectory's length), a window start t uniform in [0, n - D], h_0 = base(s_t)'s hidden state, then D ADJUST calls
on s_{t+1} .. s_{t+D} (backpropagation through all of them), and the loss is
KL(p || q) = sum_v p(v) [log p(v) - log q(v)], p = base(s_{t+D}), q = ADJUST's output at depth D, averaged over
the positions still masked in s_{t+D}. The base is frozen: its parameters get stop_gradient here and the optimiser
leaves them alone (Family.frozen). The S depths run as a static unroll; depths beyond D do not reach the loss.
Metrics: `naive_kl` (the step-start base logits against the target, what ADJUST must beat) and `top1_agreement`.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from models.family import Objective
from models.mdlm.adjust import depth_probabilities


def forward_kl(logp_target_BTV: jax.Array, logq_BTV: jax.Array) -> jax.Array:
  """KL(p || q) per position [B, T]; entries where p = 0 contribute 0 (q may be -inf there)."""
  p = jnp.exp(logp_target_BTV)
  diff = jnp.where(p > 0, logp_target_BTV - logq_BTV, 0.0)
  return jnp.sum(p * diff, axis=-1)


def states_from_order(tokens_BT: jax.Array, order_BT: jax.Array, step_BK: jax.Array, mask_id: int) -> jax.Array:
  """The trajectory states [B, K, T]: s_j keeps the tokens revealed before call j (order < j), masks the rest."""
  return jnp.where(order_BT[:, None, :] < step_BK[:, :, None], tokens_BT[:, None, :], mask_id)


@dataclasses.dataclass(frozen=True)
class AdjustObjective(Objective):
  mask_id: int
  max_depth: int = 3

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *, step=None) -> dict[str, jax.Array]:
    tokens_BT, order_BT, segment_ids_BT = batch["tokens"], batch["order"], batch["segment_ids"]
    B = tokens_BT.shape[0]
    r_depth, r_start = jax.random.split(rng)
    n_B = jnp.max(order_BT, axis=-1) + 1                      # generated tokens in each trajectory
    depth_B = 1 + jax.random.categorical(r_depth, jnp.log(depth_probabilities(self.max_depth)), shape=(B,))
    depth_B = jnp.clip(jnp.minimum(depth_B, n_B), 1, self.max_depth)
    start_B = jnp.floor(jax.random.uniform(r_start, (B,)) * (jnp.maximum(n_B - depth_B, 0) + 1)).astype(jnp.int32)
    steps_BK = start_B[:, None] + jnp.arange(self.max_depth + 1)[None]
    states_BKT = states_from_order(tokens_BT, order_BT, steps_BK, self.mask_id)
    target_BT = jnp.take_along_axis(states_BKT, depth_B[:, None, None], axis=1)[:, 0]
    targets_BT = (target_BT == self.mask_id) & (segment_ids_BT > 0) & (n_B > 0)[:, None]
    w = targets_BT.astype(jnp.float32)
    return {**batch, "states": states_BKT, "depth": depth_B,
            "weights": w / jnp.maximum(w.sum(), 1.0), "count": w}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    del rng
    frozen = None if params is None else {   # None: initialisation (models.family.init_variables)
        k: (v if k == "adjust" else jax.lax.stop_gradient(v)) for k, v in params.items()}
    variables = {"params": frozen}
    seg, pos = batch["segment_ids"], batch["positions"]
    states_BKT, depth_B = batch["states"], batch["depth"]
    target_BT = jnp.take_along_axis(states_BKT, depth_B[:, None, None], axis=1)[:, 0]
    logits0_BTV, h_BTD = apply_fn(variables, states_BKT[:, 0], seg, pos, method="base_step")
    target_logits_BTV, _ = apply_fn(variables, target_BT, seg, pos, method="base_step")
    logp_BTV = jax.lax.stop_gradient(jax.nn.log_softmax(target_logits_BTV, axis=-1))
    h_BTD = jax.lax.stop_gradient(h_BTD)
    logq_BTV = jnp.zeros_like(logp_BTV)
    for d in range(1, self.max_depth + 1):
      logits_BTV, h_BTD = apply_fn(variables, states_BKT[:, d], h_BTD, seg, pos, method="adjust_step")
      logq_BTV = jnp.where((depth_B == d)[:, None, None], jax.nn.log_softmax(logits_BTV, axis=-1), logq_BTV)
    w = batch["weights"]
    kl_BT = jnp.where(w > 0, forward_kl(logp_BTV, logq_BTV), 0.0)
    naive_BT = jnp.where(w > 0, forward_kl(logp_BTV, jax.nn.log_softmax(logits0_BTV, axis=-1)), 0.0)
    agree_BT = jnp.argmax(logq_BTV, -1) == jnp.argmax(logp_BTV, -1)
    loss = jnp.sum(kl_BT * w)
    return loss, {"loss": loss, "naive_kl": jnp.sum(naive_BT * w), "top1_agreement": jnp.sum(agree_BT * w),
                  "num_targets": jnp.sum(batch["count"])}
