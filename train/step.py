"""Pure train and eval steps: train_step(state, batch) -> (state, metrics). Gradient accumulation is a scan, or
unrolled into independent branches that XLA:CPU's runtime overlaps on its threads (`train.grad_accum_unroll`)."""
from typing import Any

import jax
import jax.numpy as jnp
import optax

from models.family import Family
from train.state import TrainState


def _split_microbatches(batch: dict[str, jax.Array], k: int) -> dict[str, jax.Array]:
  """[B, ...] -> [k, B/k, ...]; micro-batch j takes rows j, j+k, ... so each stays spread over all devices."""
  return {n: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1) for n, x in batch.items()}


def make_train_step(family: Family, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    grad_accum_steps: int = 1, unroll: bool = False):
  """unroll=True sums the micro-batches' gradients in a Python loop instead of a `lax.scan`: the same micro-batches,
  random streams and order of addition, but independent branches of one program, which XLA:CPU's thunk executor
  runs concurrently (its batched attention products and small fusions use one thread each). The cost: compile time
  and peak memory grow with the number of micro-batches, which may all be live at once."""
  objective, apply_fn = family.objective, family.module.apply

  def loss_fn(params, microbatch, rng):
    return objective.loss(apply_fn, params, microbatch, rng)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    rng = jax.random.fold_in(state.rng, state.step)
    prepare_rng, loss_rng = jax.random.split(rng)
    batch = objective.prepare(batch, prepare_rng, step=state.step)   # whole batch: weights normalised globally
    if grad_accum_steps == 1:
      (_, metrics), grads = grad_fn(state.params, batch, loss_rng)
    else:
      micro = _split_microbatches(batch, grad_accum_steps)

      def grads_and_metrics(mb, i):
        (_, m), g = grad_fn(state.params, mb, jax.random.fold_in(loss_rng, i))
        return g, m

      def body(carry, xs):
        return jax.tree.map(jnp.add, carry, grads_and_metrics(*xs)), None

      shapes = jax.eval_shape(grads_and_metrics, jax.tree.map(lambda x: x[0], micro), 0)
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
      if unroll:
        grads, metrics = zeros
        for i in range(grad_accum_steps):
          (grads, metrics), _ = body((grads, metrics), (jax.tree.map(lambda x: x[i], micro), jnp.int32(i)))
      else:
        (grads, metrics), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(grad_accum_steps)))
    metrics = objective.finalize_metrics(metrics)   # ratios of additive sums, formed once per step
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params),
                   update_norm=optax.tree.norm(updates), lr=schedule(state.step))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(family: Family):
  objective, apply_fn = family.evaluation, family.module.apply

  def eval_step(params: Any, batch: dict[str, jax.Array], rng: jax.Array) -> dict[str, jax.Array]:
    batch = objective.prepare(batch, rng, step=None)   # the end of any curriculum
    _, metrics = objective.loss(apply_fn, params, batch, rng)
    return objective.finalize_metrics(metrics)

  return eval_step
