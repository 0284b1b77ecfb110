"""bfloat16 compute keeps float32 parameters, optimiser state, logits and loss, and its gradients track float32's."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tests.helpers import tiny_config
from train.loop import build_experiment


def _grads(dtype, params=None):
  exp = build_experiment(tiny_config(**{"model.dtype": dtype, "mesh.data": 1}), devices=jax.devices()[:1])
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = exp.init_state()
    params = state.params if params is None else params
    batch = exp.family.objective.prepare(exp.to_device(next(exp.train_iterator())), jax.random.PRNGKey(0))
    loss = lambda p: exp.family.objective.loss(exp.family.module.apply, p, batch, jax.random.PRNGKey(1))  # noqa
    (value, metrics), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return value, grads, state, exp


def test_bfloat16_gradients_track_float32_with_float32_state():
  l32, g32, state32, _ = _grads("float32")
  l16, g16, state16, exp = _grads("bfloat16", state32.params)     # the same parameters and batch
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
  logits = exp.family.module.apply({"params": state32.params}, jnp.ones((1, 32), jnp.int32))
  assert logits.dtype == jnp.float32
  from models.modernbert import ModernBertEncoder                 # inside, activations are bfloat16
  h = ModernBertEncoder(exp.family.hparams).apply({"params": state32.params["model"]}, jnp.ones((1, 32), jnp.int32))
  assert h.dtype == jnp.bfloat16
