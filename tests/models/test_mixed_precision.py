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
from train.experiment import build_experiment


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
  """(result, lhs, rhs) element types of every dot in an optimised HLO module."""
  types = dict(re.findall(r"^\s*(?:ROOT )?%([\w.\-]+) = (\w+)\[", hlo, flags=re.M))
  return collections.Counter((result, types[lhs], types[rhs])
                             for result, lhs, rhs in re.findall(r"= (\w+)\[[^ ]* dot\(%([\w.\-]+), %([\w.\-]+)\)", hlo))


def test_every_dot_of_the_bfloat16_train_step_takes_bfloat16_operands(experiments):
  """Dots are counted in the optimised HLO (the custom VJPs' backward products carry no autodiff names, and fused
  dots no names at all): the train step must hold the loss's forward dots and two backward products for each."""
  step, forward = {}, {}
  for dtype, exp in experiments.items():
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
      step[dtype] = dot_types(exp.compiled_train_step().as_text())
      state = exp.init_state()
      batch = exp.family.objective.prepare(exp.to_device(next(exp.train_iterator())), jax.random.PRNGKey(0))
      loss = lambda p: exp.family.objective.loss(exp.family.module.apply, p, batch, jax.random.PRNGKey(1))[0]  # noqa
      forward[dtype] = dot_types(jax.jit(loss).lower(state.params).compile().as_text())
  assert set(step["bfloat16"]) == set(forward["bfloat16"]) == {("f32", "bf16", "bf16")}, step   # bf16 in, f32 acc
  assert set(step["float32"]) == set(forward["float32"]) == {("f32", "f32", "f32")}, step       # no bf16 in float32
  n_fwd = sum(forward["float32"].values())
  assert n_fwd >= 14 and sum(forward["bfloat16"].values()) == n_fwd, forward
  # two backward products per forward dot (plus the bias-gradient product), the same dots in both dtypes
  assert sum(step["float32"].values()) >= 3 * n_fwd, step
  assert sum(step["bfloat16"].values()) == sum(step["float32"].values()), step


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


@pytest.mark.parametrize("x_shape,k_shape,n_in", [((3, 5, 8), (8, 6), 1), ((2, 5, 4, 3), (4, 3, 7), 2),
                                                  ((4, 8), (8, 3, 2, 5), 1)])
def test_dense_product_gradients_equal_autodiff_in_float32(x_shape, k_shape, n_in):
  """models.layers.matmul.contract_last runs float32 dense products through its own VJP on CPU (backward products on
  explicitly laid-out operands, BENCHMARKS.md): its gradients are jnp.einsum's up to float32 summation order, for
  one and two contracted axes and several output axes; a swapped operand in the backward product would fail."""
  from models.layers.matmul import contract_last
  ks = jax.random.split(jax.random.PRNGKey(0), 3)
  x, k = jax.random.normal(ks[0], x_shape), jax.random.normal(ks[1], k_shape)
  w = jax.random.normal(ks[2], x_shape[:len(x_shape) - n_in] + k_shape[n_in:])
  axes = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
  reference = lambda x, k: jnp.tensordot(x, k, axes)  # noqa: E731

  def grads(f):
    return jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k)) * w), (0, 1)))(x, k)

  jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, k: jnp.sum(contract_last(x, k, n_in)), (0, 1)))(x, k))
  assert "custom_vjp_call" in jaxpr    # the custom backward is the one under test
  for got, want in zip(grads(lambda x, k: contract_last(x, k, n_in)), grads(reference)):
    assert got.shape == want.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,flags,expected", [
    ("bfloat16", "fpu avx2 fma", "no bfloat16 products"),        # AVX2 only (AMD Zen 3): emulated
    ("bfloat16", "fpu avx512f avx512_bf16", None),               # native bfloat16 products
    ("bfloat16", "fpu amx_bf16 amx_tile", None),
    ("float16", "fpu amx_bf16 avx512_fp16", "emulates float16"),
    ("float32", "fpu avx2", None),
    ("bfloat16", None, None)])                                   # no flags line at all: nothing to go by
def test_a_16bit_run_on_a_cpu_that_emulates_it_gets_a_note(dtype, flags, expected):
  from train.flops import cpu_16bit_note
  cpuinfo = "processor\t: 0\nbugs\t\t: avx512_bf16\n"                      # 'bugs' is not a flags line
  if flags is not None:
    cpuinfo += f"flags\t\t: {flags}\n"
  note = cpu_16bit_note(jax.devices("cpu"), dtype, cpuinfo)
  if expected is None:
    assert note is None
  else:
    assert expected in note and f"model.dtype={dtype}" in note and "model.dtype=float32" in note


@pytest.mark.parametrize("line,expected", [
    ("flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile", "AMX"),
    ("flags\t\t: fpu avx512f avx512_bf16", "AVX512_BF16"),
    ("Features\t: fp asimd sve bf16 i8mm", "Arm BF16"),                      # aarch64 spells them "Features"
    ("Features\t: fp asimd crc32", ""),
    ("flags\t\t: fpu avx2 fma", "")])
def test_cpu_bfloat16_products_reads_x86_and_arm_flags(line, expected):
  from train.flops import cpu_bfloat16_products
  assert cpu_bfloat16_products(f"processor\t: 0\n{line}\n") == expected

