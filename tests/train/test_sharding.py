"""Sharded training equals single-device training, and the rules really shard parameters and activations."""
import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tests.helpers import tiny_config
from train.experiment import build_experiment

MESHES = [(1, 1, 1), (8, 1, 1), (2, 4, 1), (2, 2, 2)]


def run_steps(mesh_shape, n_steps=5, **overrides):
  data, fsdp, tensor = mesh_shape
  config = tiny_config(**{"mesh.data": data, "mesh.fsdp": fsdp, "mesh.tensor": tensor}, **overrides)
  exp = build_experiment(config, devices=jax.devices()[:data * fsdp * tensor])
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = exp.init_state()
    step = exp.compiled_train_step()
    it = exp.train_iterator()
    losses = []
    for _ in range(n_steps):
      state, metrics = step(state, exp.to_device(next(it)))
      losses.append(float(metrics["loss"]))
  return np.array(losses), state, exp


@pytest.fixture(scope="module")
def runs():
  return {m: run_steps(m) for m in MESHES[:1] + MESHES[2:]}


# (8, 1, 1) is the default mesh of every other trainer test (mesh.data=-1 over the 8 simulated devices); the
# fsdp and tensor meshes are the ones only this test covers.
@pytest.mark.parametrize("mesh_shape", MESHES[2:])
def test_sharded_loss_equals_single_device(runs, mesh_shape):
  ref, _, _ = runs[(1, 1, 1)]
  losses, _, _ = runs[mesh_shape]
  assert ref[-1] < ref[0]  # it trains
  np.testing.assert_allclose(losses, ref, atol=1e-5, rtol=0)


def test_parameters_are_sharded_as_the_rules_say(runs):
  _, state, exp = runs[(2, 2, 2)]
  p = state.params["model"]
  # Wqkv [embed, 3, heads, kv]: embed -> fsdp, heads -> tensor.
  wqkv = p["layers_0"]["attn"]["Wqkv"]["kernel"]
  assert wqkv.sharding.spec == P("fsdp", None, "tensor", None)
  assert wqkv.addressable_shards[0].data.shape == (32 // 2, 3, 2 // 2, 16)
  assert p["layers_1"]["mlp"]["Wo"]["kernel"].sharding.spec == P("tensor", "fsdp")
  emb = p["embeddings"]["tok_embeddings"]["embedding"]
  assert emb.sharding.spec == P("tensor", "fsdp")
  assert emb.addressable_shards[0].data.shape == (emb.shape[0] // 2, emb.shape[1] // 2)
  # Adam moments follow their parameters.
  mu = state.opt_state[1][0].mu["model"]["layers_0"]["attn"]["Wqkv"]["kernel"]
  assert mu.sharding.spec == wqkv.sharding.spec


def test_activations_are_sharded_as_the_rules_say(runs):
  _, state, exp = runs[(2, 2, 2)]
  module = exp.family.module
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    tokens = jax.device_put(np.ones((8, 32), np.int32), exp.batch_shardings["tokens"])
    f = jax.jit(lambda params, t: module.apply({"params": params}, t, method=lambda m, t: m.__call__(t)))
    hlo = f.lower(state.params, tokens).as_text()
    logits = f(state.params, tokens)
  # Logits [batch, length, vocab]: batch over (data, fsdp), vocab over tensor: 8/4 rows, 320/2 columns per device.
  assert logits.sharding.spec == P(("data", "fsdp"), None, "tensor")
  assert logits.addressable_shards[0].data.shape == (2, 32, 160)
  # The block-boundary constraints are in the program (they are silently dropped without jax.set_mesh).
  assert hlo.count("sharding_constraint") + hlo.count("Sharding") >= 2 * 2
