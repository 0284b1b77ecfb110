"""Optimiser: AdamW with warmup then cosine/linear decay, global-norm clipping, no decay on norms and biases."""
from typing import Any, Callable

import flax
import jax.numpy as jnp
import optax

SCHEDULES = ("cosine", "linear", "constant")


def learning_rate_schedule(optim_cfg: Any, num_steps: int) -> optax.Schedule:
  lr, warmup = optim_cfg.lr, optim_cfg.warmup_steps
  end = lr * optim_cfg.end_lr_frac
  decay_steps = max(num_steps - warmup, 1)
  if optim_cfg.schedule == "cosine":
    decay = optax.cosine_decay_schedule(lr, decay_steps, alpha=optim_cfg.end_lr_frac)
  elif optim_cfg.schedule == "linear":
    decay = optax.linear_schedule(lr, end, decay_steps)
  elif optim_cfg.schedule == "constant":
    decay = optax.constant_schedule(lr)
  else:
    raise ValueError(f"optim.schedule={optim_cfg.schedule!r}: use 'cosine', 'linear' or 'constant'")
  # Warmup starts above zero so that step 0 already updates the parameters.
  warm = optax.linear_schedule(lr / max(warmup, 1), lr, max(warmup - 1, 1))
  return optax.join_schedules([warm, decay], [warmup]) if warmup > 0 else decay


DECAYED = ("kernel", "embedding")
# optim.moment_dtype: the dtype of AdamW's first moment (optax's mu_dtype; the update is computed in float32 and
# the moment rounded when stored). The second moment stays float32: its EMA adds (1 - b2) g^2 per step, a relative
# change of 2% at b2 = 0.98 and 0.1% at 0.999, at or below bfloat16's resolution (0.4%), so it would stall.
MOMENT_DTYPES = ("float32", "bfloat16")


def decay_mask(params: Any) -> Any:
  """Weight decay by parameter path: kernels and embedding tables (leaf names in DECAYED) decay; biases (also the
  fused [3, H, Dh] QKV biases), norm scales and learned vectors (decoder biases, AS-ARM's query embedding) don't."""
  return flax.traverse_util.path_aware_map(lambda path, _: path[-1] in DECAYED, params)


def build_optimizer(optim_cfg: Any, num_steps: int, frozen: Callable[[tuple[str, ...]], bool] | None = None
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Clipping + AdamW; with `frozen` (a family's Family.frozen), the parameters it selects get a zero final update
  (after AdamW, so weight decay never moves them either). Their moments stay zero, their gradient being stopped by
  the objective; the optimiser state keeps the parameters' structure, so its shardings follow them."""
  schedule = learning_rate_schedule(optim_cfg, num_steps)
  moment_dtype = optim_cfg.get("moment_dtype", "float32")
  if moment_dtype not in MOMENT_DTYPES:
    raise ValueError(f"optim.moment_dtype={moment_dtype!r}: use one of {MOMENT_DTYPES}")
  parts = []
  if optim_cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(optim_cfg.clip_norm))
  parts.append(optax.adamw(schedule, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                           weight_decay=optim_cfg.weight_decay, mask=decay_mask,
                           mu_dtype=None if moment_dtype == "float32" else jnp.dtype(moment_dtype)))
  tx = optax.chain(*parts)
  if frozen is not None:
    tx = optax.chain(tx, zero_frozen(frozen))
  return tx, schedule


def zero_frozen(frozen: Callable[[tuple[str, ...]], bool]) -> optax.GradientTransformation:
  """Sets the updates of the parameters whose path `frozen` selects to zero (stateless)."""
  def update(updates, state, params=None):
    del params
    return flax.traverse_util.path_aware_map(
        lambda path, u: jnp.zeros_like(u) if frozen(tuple(path)) else u, updates), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
