"""Pallas splash attention (models/layers/splash.py) against jax.nn.dot_product_attention (the "xla" kernel, which
we did not write), in Pallas interpret mode on CPU: values and gradients for sliding-window (ModernBERT's
|i - j| <= w), global, causal and packed masks at T = 256 in blocks of 128 (several blocks, partial ones at the
window's edges), float32 and bfloat16; a window one key wider is the negative control. Then the sharded path
(shard_map over a data x tensor mesh of 8 CPU devices inside a jitted step), and the refusals."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.sharding import RULES
from models.layers.attention import SelfAttention, attention_mask, dot_product_attention
from models.layers.splash import executed_keys, splash_attention

B, T, H, D = 2, 256, 2, 16
W = 40   # half window: query 100 reads keys 60..140, across the 128-block boundary
CASES = {"local": (False, W), "global": (False, None), "causal": (True, None), "causal_local": (True, W)}
TOL = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2}


def _inputs(dtype):
  r = np.random.default_rng(0)
  q, k, v = (jnp.asarray(r.normal(size=(B, T, H, D)), dtype) for _ in range(3))
  seg = np.ones((B, T), np.int32)
  seg[0, 90:] = 2          # two packed documents in row 0 (the boundary inside the first block)
  seg[1, 200:] = 0         # padding at the end of row 1
  w_out = jnp.asarray(r.normal(size=(B, T, H, D)), jnp.float32) * (seg != 0)[..., None, None]
  return q, k, v, jnp.asarray(seg), w_out


def _value_and_grads(attend, q, k, v, w_out):
  """The output at real (non-padding) queries, and the gradients of a weighted sum of it w.r.t. q, k, v."""
  loss = lambda q, k, v: jnp.sum(attend(q, k, v).astype(jnp.float32) * w_out)  # noqa: E731
  return attend(q, k, v).astype(jnp.float32) * (w_out != 0), jax.grad(loss, argnums=(0, 1, 2))(q, k, v)


def _xla(seg, causal, window):
  mask = attention_mask(seg, causal=causal, half_window=window)
  return lambda q, k, v: dot_product_attention(q, k, v, mask, D ** -0.5, "xla")


def _splash(seg, causal, window):
  return lambda q, k, v: splash_attention(q, k, v, seg, D ** -0.5, causal=causal, half_window=window, block=128,
                                          interpret=True)


def _max_diff(a, b):
  return max(float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("case", list(CASES))
def test_splash_equals_xla_attention_in_values_and_gradients(case, dtype):
  causal, window = CASES[case]
  q, k, v, seg, w_out = _inputs(dtype)
  ours = _value_and_grads(_splash(seg, causal, window), q, k, v, w_out)
  ref = _value_and_grads(_xla(seg, causal, window), q, k, v, w_out)
  assert _max_diff(ours, ref) < TOL[dtype]
  if window is not None and dtype == jnp.float32:   # negative control: one more key on each side must show
    wider = _value_and_grads(_splash(seg, causal, window + 1), q, k, v, w_out)
    assert _max_diff(wider, ref) > 100 * TOL[dtype]
  if case == "global" and dtype == jnp.float32:      # and so must ignoring the documents' boundaries
    unpacked = _value_and_grads(_splash(jnp.ones_like(seg), causal, window), q, k, v, w_out)
    assert _max_diff(unpacked, ref) > 100 * TOL[dtype]


def test_sharded_splash_inside_a_jitted_step_equals_the_dense_layer():
  """A SelfAttention layer with splash under a data=2 x tensor=2 (x fsdp=2) mesh of CPU devices: shard_map over
  batch and heads inside jit, equal to the same layer with the xla kernel."""
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, T, 32)), jnp.float32)
  _, _, _, seg2, _ = _inputs(jnp.float32)
  seg = jnp.concatenate([seg2, seg2])
  pos = jnp.broadcast_to(jnp.arange(T), (4, T))
  layers = {impl: SelfAttention(num_heads=4, head_dim=8, rope_theta=10_000.0, half_window=W, implementation=impl)
            for impl in ("splash", "xla")}
  params = layers["xla"].init(jax.random.PRNGKey(0), x, seg, pos)
  out = {}
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    for impl, layer in layers.items():
      f = jax.jit(jax.value_and_grad(lambda p, layer=layer: jnp.sum(layer.apply(p, x, seg, pos) * (seg != 0)[..., None])))
      out[impl] = f(params)
    lowered = jax.jit(lambda p: layers["splash"].apply(p, x, seg, pos)).lower(params).as_text()
  assert "shard_map" in lowered or "sdy.manual_computation" in lowered
  assert _max_diff(out["splash"], out["xla"]) < 1e-4


def test_splash_refuses_what_it_cannot_do():
  layer = SelfAttention(num_heads=2, head_dim=8, rope_theta=None, implementation="splash")
  x = jnp.zeros((1, 128, 16))
  seg, pos = jnp.ones((1, 128), jnp.int32), jnp.broadcast_to(jnp.arange(128), (1, 128))
  params = SelfAttention(num_heads=2, head_dim=8, rope_theta=None).init(jax.random.PRNGKey(0), x, seg, pos)
  with pytest.raises(ValueError, match=r"^model.attention_impl='splash' takes the segment, causal and window masks "
                                       r"only, not a model's own visibility mask"):
    layer.apply(params, x, seg, pos, mask_B1TT=jnp.ones((1, 1, 128, 128), bool))
  with pytest.raises(ValueError, match=r"^model.attention_impl='splash' needs a length that is a multiple of 128 "
                                       r"\(now 96\)"):
    layer.apply(params, x[:, :96], seg[:, :96], pos[:, :96])


def test_executed_keys_count_the_blocks_the_mask_touches():
  # +-64 at T = 8192 in 128-blocks: interior query blocks read 3 key blocks, the two end blocks 2.
  assert executed_keys(8192, False, 64) == (62 * 3 + 2 * 2) * 128 / 64
  assert executed_keys(8192, False, None) == 8192
  assert executed_keys(1024, True, None) == sum(range(1, 3)) * 512 / 2   # 512-blocks: 1 + 2 key blocks
