"""Weight decay is decided by parameter path: kernels and embedding tables decay; biases (the fused [3, H, Dh] QKV
bias included), norm scales and learned vectors do not."""
import flax
import jax
import jax.numpy as jnp
import numpy as np

from configs import electra as electra_configs
from configs.families import build
from data.vocab import ByteVocabulary
from tests.helpers import tiny_causal_config
from train.optim import build_optimizer, decay_mask


def _decayed(config):
  family = build(config, ByteVocabulary())
  params = flax.linen.unbox(jax.eval_shape(family.init_variables, jax.random.PRNGKey(0))["params"])
  flat = flax.traverse_util.flatten_dict(decay_mask(params), sep="/")
  return {k for k, v in flat.items() if v}, {k for k, v in flat.items() if not v}, params


def test_gpt2_decays_exactly_its_kernels_and_embeddings():
  decayed, kept, _ = _decayed(tiny_causal_config())
  layer = ["attn/Wqkv/kernel", "attn/Wo/kernel", "mlp/c_fc/kernel", "mlp/c_proj/kernel"]
  assert decayed == {"wte/embedding", "wpe/embedding"} | {f"h_{i}/{n}" for i in range(2) for n in layer}
  assert {"h_0/attn/Wqkv/bias", "h_1/ln_1/scale", "ln_f/bias"} <= kept


def test_electra_keeps_its_fused_qkv_bias_and_lm_bias_undecayed():
  decayed, kept, _ = _decayed(electra_configs.get_config("tiny"))
  assert "discriminator/encoder/layers_0/attention/Wqkv/bias" in kept
  assert "generator/lm_bias" in kept and "embeddings/LayerNorm/scale" in kept
  assert "embeddings/word_embeddings/embedding" in decayed
  assert all(k.endswith(("kernel", "embedding")) for k in decayed)


def test_adamw_shrinks_only_the_decayed_parameters():
  c = tiny_causal_config()
  c.optim.weight_decay, c.optim.clip_norm, c.optim.warmup_steps = 0.5, 0.0, 0
  _, _, params = _decayed(c)
  params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), params)
  tx, schedule = build_optimizer(c.optim, c.train.num_steps)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)   # zero gradients
  new = flax.traverse_util.flatten_dict(jax.tree.map(lambda p, u: p + u, params, updates), sep="/")
  shrunk = 1 - float(schedule(0)) * 0.5
  np.testing.assert_allclose(np.asarray(new["h_0/attn/Wqkv/kernel"]), shrunk, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(new["h_0/attn/Wqkv/bias"]), 1.0)
