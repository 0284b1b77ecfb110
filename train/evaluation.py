"""Evaluation, the same wherever it runs (the training loop, `--mode=eval`, the follower):

  evaluate   target-weighted mean metrics over `eval.num_batches` fixed validation batches (fixed masking key)
  run_evals  the family's own evaluations (`Family.evals`, declared like big_vision's evaluators: name, every,
             function), each due at its `every` and at the run's last step
"""
from typing import Any

import jax
import numpy as np

from models.family import Evaluation
from train.step import make_eval_step


def evaluate(exp, params: Any, eval_step=None) -> dict[str, float]:
  """Target-weighted averages over `eval.num_batches` fixed validation batches (fixed masking key)."""
  eval_step = eval_step or jax.jit(make_eval_step(exp.family))
  it = exp.eval_iterator()
  rng = jax.random.PRNGKey(exp.config.seed + 2)
  totals: dict[str, float] = {}
  count = 0.0
  for i in range(exp.config.eval.num_batches):
    batch = exp.to_device(next(it), "the evaluation data")
    m = jax.device_get(eval_step(params, batch, jax.random.fold_in(rng, i)))
    n = float(m["num_targets"])
    count += n
    for k, v in m.items():
      totals[k] = totals.get(k, 0.0) + (float(v) if k == "num_targets" else float(v) * n)
  return {k: (v if k == "num_targets" else v / max(count, 1.0)) for k, v in totals.items()}


def due(evals: tuple[Evaluation, ...], step: int, last: bool) -> tuple[Evaluation, ...]:
  """The evaluations due at `step`: each at its `every` (0: never in between) and all of them at the last step."""
  return tuple(e for e in evals if last or (e.every and step % e.every == 0))


def run_evals(evals: tuple[Evaluation, ...], params: Any) -> dict[str, Any]:
  """name -> the evaluation's JSON-able result."""
  return {e.name: _plain(e.fn(params)) for e in evals}


def _plain(value: Any) -> Any:
  """numpy / jax scalars and arrays -> Python values, so a result is JSON as the family returns it."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, (np.ndarray, jax.Array, np.generic)):
    return np.asarray(value).tolist()
  return value
