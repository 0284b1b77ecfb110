"""A family defined entirely in this file (a float input and an integer label, no tokens) trains, checkpoints,
resumes exactly and evaluates through train.loop: nothing in train/ knows it exists.

The file is also a config for launch.py (`--config=tests/suites/test_family_interface.py[:poison=K]`); importing it
registers the family. `:poison=K` makes the gradient of update K infinite while the loss stays finite.
"""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import families
from configs.base import get_base_config
from data.sources import Synthetic
from models.family import BatchField, Family, Objective
from models.losses import cross_entropy_with_accuracy, weighted_loss_and_metrics
from tests.helpers import time_slice, train_losses
from train.errors import ConfigError
from train.experiment import build_experiment
from train.modes import run
from train.loop import train

WIDTH, CLASSES = 6, 3
TEACHER = np.random.default_rng(0).normal(size=(WIDTH, CLASSES))


class ToyClassifier(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x_BW):
    h = nn.tanh(nn.Dense(self.hidden)(x_BW))
    return nn.Dense(CLASSES)(h)


@jax.custom_vjp
def _poison(x, flag):
  return x


def _poison_fwd(x, flag):
  return x, flag


def _poison_bwd(flag, g):
  return jnp.where(flag, jnp.inf, 1.0) * g, None


_poison.defvjp(_poison_fwd, _poison_bwd)


class ToyObjective(Objective):
  """Cross-entropy of y given x; each example weighs 1/B (additive over micro-batches). With `poison_step` > 0 the
  gradient of the update that makes step `poison_step` is infinite (the loss is unchanged)."""

  def __init__(self, poison_step: int = 0):
    self.poison_step = poison_step

  def prepare(self, batch, rng, *, step=None):
    B = batch["y"].shape[0]
    flag = jnp.asarray(False) if step is None or not self.poison_step else step + 1 == self.poison_step
    return {**batch, "w": jnp.full((B,), 1.0 / B), "poison": jnp.broadcast_to(flag, (B,))}

  def loss(self, apply_fn, params, batch, rng):
    logits = _poison(apply_fn({"params": params}, batch["x"]), batch["poison"][0])
    nll, correct = cross_entropy_with_accuracy(logits, batch["y"])
    return weighted_loss_and_metrics(nll, correct, batch["w"])


def toy_example(seed: int, index: int) -> dict[str, np.ndarray]:
  x = np.random.default_rng([seed, index]).normal(size=WIDTH).astype(np.float32)
  return {"x": x, "y": np.int32(np.argmax(x @ TEACHER))}


@families.register("toy_classifier", {"model.name": None, "model.hidden": None, "objective.poison_step": None})
def build_toy(config, vocab) -> Family:
  del vocab
  h = config.model.hidden
  spec = {"x": BatchField((WIDTH,), np.float32, (None,)), "y": BatchField((), np.int32, ())}
  return Family("toy_classifier", ToyClassifier(h), ToyObjective(config.objective.get("poison_step", 0)),
                {"hidden": h}, spec, Synthetic(toy_example),
                flops_per_token=lambda _: 6.0 * (WIDTH * h + h * CLASSES), tokens_per_example=1)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """This file is also a config: python launch.py --config=tests/suites/test_family_interface.py --workdir=/tmp/toy
  Expected result: 8 steps in seconds; the loss falls and accuracy is well above chance (1/3)."""
  c = get_base_config()
  c.model = ml_collections.ConfigDict({"name": "toy_classifier", "hidden": 16})
  if arg and arg.startswith("poison="):
    c.objective.poison_step = int(arg.split("=")[1])
  elif arg:
    raise ValueError(f"tests/suites/test_family_interface.py: unknown argument {arg!r}; use 'poison=K' or nothing")
  c.data.vocab = "byte"
  c.train.batch_size, c.train.num_steps = 16, 8
  c.train.checkpoint_every = c.train.eval_every = 4
  c.train.log_every = 4
  c.optim.lr, c.optim.warmup_steps = 3e-2, 0
  c.eval.batch_size, c.eval.num_batches = 16, 4
  c.lock()
  return c


def toy_config():
  return get_config()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("toy"))
  return wd, train(toy_config(), wd)


def test_toy_family_trains_and_evaluates(straight):
  wd, final = straight
  losses = train_losses(wd)
  assert sorted(losses) == list(range(1, 9))
  assert losses[8] < 0.8 * losses[1]                      # it learns the teacher's labels
  assert final["accuracy"] > 0.5 and final["num_targets"] == 64   # chance is 1/3; 4 batches of 16
  assert sorted(os.listdir(os.path.join(wd, "checkpoints")), key=int) == ["4", "8"]
  assert json.load(open(os.path.join(wd, "config.json")))["model"] == {"name": "toy_classifier", "hidden": 16}


def test_toy_family_resumes_exactly(straight, tmp_path):
  wd_ref, _ = straight
  wd = str(tmp_path)
  train(time_slice(toy_config(), 4), wd)
  train(toy_config(), wd)                                  # restores step 4: params, optimiser, synthetic stream
  ref, got = train_losses(wd_ref), train_losses(wd)
  assert [got[s] for s in range(1, 9)] == [ref[s] for s in range(1, 9)]


def test_toy_family_eval_mode_reads_the_stored_config(straight):
  wd, final = straight
  metrics = run(toy_config(), wd, "eval")
  assert metrics == pytest.approx(final, rel=1e-6)


def test_batch_from_the_source_is_checked_against_the_spec():
  exp = build_experiment(toy_config())
  batch = next(exp.train_iterator())
  with pytest.raises(ConfigError, match=r"yields x of shape \(16, 5\) float32 but the family's batch_spec "
                                        r"declares \(B, 6\) float32"):
    exp.to_device({**batch, "x": batch["x"][:, :5]})
  with pytest.raises(ConfigError, match=r"yields keys \['x'\] but the family's batch_spec declares \['x', 'y'\]"):
    exp.to_device({"x": batch["x"]})


def test_a_key_the_family_does_not_read_is_refused():
  c = toy_config()
  c.unlock()
  c.model.dropout = 0.1
  with pytest.raises(ConfigError, match=r"model.name='toy_classifier' does not read model.dropout; remove it"):
    build_experiment(c)
