"""Gradient accumulation unrolled equals the scan (the scan equals one large batch: tests/suites/test_conformance.py)."""
import functools

import flax.linen as nn
import jax
import numpy as np

from tests.helpers import tiny_config
from train.experiment import build_experiment


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


def test_unrolled_microbatches_equal_the_scan():
  """train.grad_accum_unroll: the same micro-batches, random streams and order of addition as the scan, so the
  same update (the scan's equality with one large batch, for every family: tests/suites/test_conformance.py)."""
  p2, m2 = one_step(2)
  pu, mu = one_step(2, unroll=True)
  for k in ("loss", "accuracy", "num_targets", "grad_norm"):
    np.testing.assert_allclose(mu[k], m2[k], rtol=1e-6, atol=0, err_msg=k)
  assert m2["grad_norm"] > 0
  assert max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), pu, p2))) < 1e-6
