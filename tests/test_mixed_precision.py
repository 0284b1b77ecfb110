"""bfloat16 compute keeps float32 parameters, optimiser state, logits and loss, and tracks the float32 run."""
import jax
import jax.numpy as jnp
import numpy as np

from tests.test_sharding import run_steps


def test_bfloat16_compute_with_float32_state_and_loss():
  f32_losses, _, _ = run_steps((1, 1, 1), n_steps=3)
  bf16_losses, state, exp = run_steps((1, 1, 1), n_steps=3, **{"model.dtype": "bfloat16"})
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
  assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(state.opt_state))
  np.testing.assert_allclose(bf16_losses, f32_losses, rtol=2e-2)
  assert not np.array_equal(bf16_losses, f32_losses)   # the compute really ran in bfloat16
  logits = exp.family.module.apply({"params": state.params}, jnp.ones((1, 32), jnp.int32))
  assert logits.dtype == jnp.float32
  # Inside, activations are bfloat16: the encoder's output dtype shows it.
  from models.modernbert import ModernBertEncoder
  enc = ModernBertEncoder(exp.family.hparams)
  h = enc.apply({"params": state.params["model"]}, jnp.ones((1, 32), jnp.int32))
  assert h.dtype == jnp.bfloat16
