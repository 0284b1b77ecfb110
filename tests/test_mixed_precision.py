"""bfloat16 compute keeps float32 parameters, optimiser state, logits and loss; its gradients track float32's; and
every dot of the compiled train step, forward and backward, takes bfloat16 operands and accumulates in float32."""
import collections
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from train.loop import build_experiment


@pytest.fixture(scope="module")
def experiments():
  return {d: build_experiment(tiny_config(**{"model.dtype": d, "mesh.data": 1}), devices=jax.devices()[:1])
          for d in ("float32", "bfloat16")}


def _grads(exp, params=None):
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = exp.init_state()
    params = state.params if params is None else params
    batch = exp.family.objective.prepare(exp.to_device(next(exp.train_iterator())), jax.random.PRNGKey(0))
    loss = lambda p: exp.family.objective.loss(exp.family.module.apply, p, batch, jax.random.PRNGKey(1))  # noqa
    (value, metrics), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return value, grads, state


def test_bfloat16_gradients_track_float32_with_float32_state(experiments):
  l32, g32, state32 = _grads(experiments["float32"])
  exp = experiments["bfloat16"]
  l16, g16, state16 = _grads(exp, state32.params)     # the same parameters and batch
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state16.params))
  assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(state16.opt_state))
  assert l16.dtype == jnp.float32 and abs(float(l16) - float(l32)) < 1e-2 * abs(float(l32))
  a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g32)])
  b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g16)])
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(g16))
  cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
  assert cosine > 0.999, cosine                                   # same direction ...
  assert abs(np.linalg.norm(b) / np.linalg.norm(a) - 1) < 2e-2    # ... and size
  assert np.abs(a - b).max() > 0                                  # but the compute really ran in bfloat16
  ids = jnp.ones((1, 32), jnp.int32)
  logits = jax.eval_shape(lambda p: exp.family.module.apply({"params": p}, ids), state32.params)
  assert logits.dtype == jnp.float32
  from models.modernbert import ModernBertEncoder                 # inside, activations are bfloat16
  h = jax.eval_shape(lambda p: ModernBertEncoder(exp.family.hparams).apply({"params": p}, ids),
                     state32.params["model"])
  assert h.dtype == jnp.bfloat16


def dot_types(hlo: str) -> collections.Counter:
  """(result, lhs, rhs) element types of every dot in an optimised HLO module, with forward/backward (JAX names
  the backward pass's ops `transpose(jvp(...))`; custom VJPs' backward products are not named so)."""
  types = dict(re.findall(r"^\s*(?:ROOT )?%([\w.\-]+) = (\w+)\[", hlo, flags=re.M))
  out = collections.Counter()
  for result, lhs, rhs, rest in re.findall(r"= (\w+)\[[^ ]* dot\(%([\w.\-]+), %([\w.\-]+)\)(.*)", hlo):
    out[(result, types[lhs], types[rhs], "backward" if "transpose(jvp(" in rest else "forward")] += 1
  return out


def test_every_dot_of_the_bfloat16_train_step_takes_bfloat16_operands(experiments):
  got = {}
  for dtype, exp in experiments.items():
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
      got[dtype] = dot_types(exp.compiled_train_step().as_text())
  b16, f32 = got["bfloat16"], got["float32"]
  assert {k[:3] for k in b16} == {("f32", "bf16", "bf16")}, b16      # float32 accumulation, bfloat16 inputs
  assert {k[:3] for k in f32} == {("f32", "f32", "f32")}, f32        # the float32 path has no bfloat16 dot
  fwd = sum(n for k, n in f32.items() if k[3] == "forward")          # both passes are there: 2 per forward dot
  bwd = sum(n for k, n in f32.items() if k[3] == "backward")
  assert fwd >= 14 and bwd >= 2 * fwd - 2, f32
  assert sum(b16.values()) == fwd + bwd                              # the same dots, all in bfloat16


def test_bias_gradient_product_equals_the_reduction():
  """models.layers.matmul.add_bias (bias gradient as ones · cotangent): the gradients of y + b, exactly up to
  float32 summation order, and within bfloat16 rounding of the cotangent on the bfloat16 path."""
  from models.layers.matmul import add_bias
  y = jax.random.normal(jax.random.PRNGKey(0), (4, 33, 40))
  b = jax.random.normal(jax.random.PRNGKey(1), (40,))
  w = jax.random.normal(jax.random.PRNGKey(2), (4, 33, 40))

  def grads(f):
    return jax.jit(jax.grad(lambda y, b: jnp.sum(jnp.sin(f(y, b)) * w), (0, 1)))(y, b)

  want = grads(lambda y, b: y + b)
  for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)):
    got = grads(lambda y, b: add_bias(y, b, dtype))
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    err = float(jnp.abs(got[1] - want[1]).max() / jnp.abs(want[1]).max())
    assert err < tol, (dtype, err)
  assert float(jnp.abs(grads(lambda y, b: add_bias(y, b, jnp.bfloat16))[1] - want[1]).max()) > 0   # really bf16
