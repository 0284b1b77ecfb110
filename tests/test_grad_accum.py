"""Gradient accumulation over 4 micro-batches equals one large batch, scanned or unrolled."""
import functools

import flax.linen as nn
import jax
import numpy as np

from tests.helpers import tiny_config
from train.loop import build_experiment


@functools.cache
def one_step(accum, unroll=False):
  config = tiny_config(**{"train.grad_accum_steps": accum, "train.grad_accum_unroll": unroll, "mesh.data": 2})
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


def test_unrolled_microbatches_equal_the_scan():
  """train.grad_accum_unroll: the same micro-batches, random streams and order of addition as the scan, so the
  same update; and one large batch's (the scan's equality with it is the test above)."""
  p4, m4 = one_step(4)
  pu, mu = one_step(4, unroll=True)
  p1, _ = one_step(1)
  for k in ("loss", "accuracy", "num_targets", "grad_norm"):
    np.testing.assert_allclose(mu[k], m4[k], rtol=1e-6, atol=0, err_msg=k)
  assert max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), pu, p4))) < 1e-6
  assert max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), pu, p1))) < 1e-6
