"""optim.moment_dtype: AdamW's first moment stored in bfloat16 (optax's mu_dtype), the second in float32."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import tiny_causal_config
from train.optim import build_optimizer


def _adam_states(moment_dtype, grads, params):
  c = tiny_causal_config()
  c.optim.clip_norm, c.optim.weight_decay, c.optim.moment_dtype = 0.0, 0.0, moment_dtype
  tx, _ = build_optimizer(c.optim, c.train.num_steps)
  state, updates = tx.init(params), []
  for g in grads:
    u, state = tx.update(g, state, params)
    updates.append(u)
  adam, = [s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
           if isinstance(s, optax.ScaleByAdamState)]
  return adam.mu, adam.nu, updates


def test_bfloat16_first_moment_is_the_rounded_ema_and_the_second_stays_float32():
  params = {"w": jnp.ones((64, 48), jnp.float32)}
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  grads = [{"w": jax.random.normal(k, (64, 48)) * 10.0 ** float(e)} for k, e in zip(keys, (-3, 0, 2))]
  mu16, nu16, up16 = _adam_states("bfloat16", grads, params)
  mu32, nu32, up32 = _adam_states("float32", grads, params)
  assert mu16["w"].dtype == jnp.bfloat16 and nu16["w"].dtype == jnp.float32 and mu32["w"].dtype == jnp.float32
  ref = jnp.zeros((64, 48), jnp.bfloat16)        # the EMA, stored in bfloat16 after every step (optax multiplies
  for g in grads:                                # the stored moment by b1 in its own dtype, adds in float32)
    ref = ((1 - 0.9) * g["w"] + 0.9 * ref).astype(jnp.bfloat16)
  np.testing.assert_array_equal(np.asarray(mu16["w"], np.float32), np.asarray(ref, np.float32))
  np.testing.assert_array_equal(np.asarray(nu16["w"]), np.asarray(nu32["w"]))        # untouched by the option
  rel = jnp.linalg.norm(up16[-1]["w"] - up32[-1]["w"]) / jnp.linalg.norm(up32[-1]["w"])
  assert 0 < float(rel) < 2 ** -7          # differs from the float32 optimiser's only by the moment's rounding


def test_unknown_moment_dtype_names_the_key():
  c = tiny_causal_config()
  c.optim.moment_dtype = "float16"
  with pytest.raises(ValueError, match="optim.moment_dtype='float16'"):
    build_optimizer(c.optim, c.train.num_steps)
