"""Gradient accumulation over 4 micro-batches equals one large batch."""
import flax.linen as nn
import jax
import numpy as np

from tests.helpers import tiny_config
from train.loop import build_experiment


def one_step(accum):
  config = tiny_config(**{"train.grad_accum_steps": accum, "mesh.data": 2})
  exp = build_experiment(config, devices=jax.devices()[:2])
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = exp.init_state()
    step = exp.compiled_train_step()
    batch = exp.to_device(next(exp.train_iterator()))
    state, metrics = step(state, batch)
  return jax.device_get(state.params), jax.device_get(metrics)


def test_accumulating_four_microbatches_equals_one_batch():
  p1, m1 = one_step(1)
  p4, m4 = one_step(4)
  for k in ("loss", "accuracy", "num_targets", "grad_norm"):
    np.testing.assert_allclose(m4[k], m1[k], rtol=1e-6, atol=1e-6, err_msg=k)
  assert m1["grad_norm"] > 0
  diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), p1, p4)
  assert max(jax.tree.leaves(diffs)) < 1e-6
