"""Shared test helpers: tiny configs and subprocess runs of launch.py."""
import json
import os
import subprocess
import sys

from configs import test_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require(module: str):
  """The reference implementation `module` (transformers, torch, seqio): imported; skipped when missing on a
  developer machine, but a failure under CI=true, where requirements-test.txt installs it (no silent skip of an
  oracle in CI)."""
  import importlib

  import pytest
  if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    return importlib.import_module(module)
  return pytest.importorskip(module)


def tiny_config(**overrides):
  """configs/test_tiny.py with dotted overrides, e.g. tiny_config(**{"train.num_steps": 4}). Overriding
  model.name may add that family's keys (data.task, ...); the keys it does not read are dropped."""
  from configs import families
  from configs.base import prune_unread
  c = test_tiny.get_config()
  c.unlock()
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    if leaf not in node and not key.startswith(families.FAMILY_SECTIONS) and key not in families.FAMILY_KEYS:
      raise KeyError(f"tiny_config: no config key {key}")
    node[leaf] = value
  prune_unread(c)
  c.lock()
  return c


def time_slice(config, steps: int):
  """`config` with train.stop_after_steps=steps: a run that ends after that many steps with a checkpoint, as a
  preempted or time-sliced job does (a later run with `config` continues it)."""
  import ml_collections
  c = ml_collections.ConfigDict(config.to_dict())
  c.train.stop_after_steps = steps
  c.lock()
  return c


def tiny_causal_config(arg=None, seq_len=32, num_steps=30):
  """configs/causal_lm.py shrunk to a 2-layer, d=32 byte-level model that trains in seconds."""
  from configs import causal_lm
  c = causal_lm.get_config(",".join(w for w in (arg, "tiny") if w))
  c.unlock()
  c.model.max_position_embeddings = c.data.seq_len = seq_len
  c.train.num_steps = c.train.eval_every = c.train.checkpoint_every = num_steps
  return c


def launch_cmd(workdir, *args, config="configs/test_tiny.py"):
  """launch.py with `config` (None: no --config flag, i.e. the README's default job)."""
  flag = [f"--config={os.path.join(ROOT, config)}"] if config else []
  return [sys.executable, os.path.join(ROOT, "launch.py"), *flag, f"--workdir={workdir}", *args]


def subprocess_env(num_devices: int = 1) -> dict:
  """The session's environment for a launch.py subprocess: its own device count, the session's other XLA flags
  (conftest's -O2) and compilation cache."""
  env = dict(os.environ)
  kept = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(kept + [f"--xla_force_host_platform_device_count={num_devices}"])
  env["PYTHONPATH"] = ROOT
  return env


def run_launch(workdir, *args, num_devices=1, timeout=300, config="configs/test_tiny.py"):
  return subprocess.run(launch_cmd(workdir, *args, config=config), capture_output=True, text=True, cwd=ROOT,
                        env=subprocess_env(num_devices), timeout=timeout)


def train_losses(workdir) -> dict[int, float]:
  """step -> loss from metrics.jsonl (the last record of a step wins: a resumed run re-logs steps)."""
  out = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      if r["split"] == "train":
        out[r["step"]] = r["loss"]
  return out


def fit_plainly(family, tx, *, steps: int, batch: int, seed: int):
  """A family's own objective and data trained by a plain jitted loop on one device, without the trainer (the
  learning-claim tests: cheap, and the trainer's own promises are the conformance suite's). Initialisation key,
  data seed and step keys derive from `seed`; returns the parameters."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import optax
  params = nn.unbox(jax.jit(family.init_variables)(jax.random.PRNGKey(seed))["params"])
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, batch, key):
    r_prep, r_loss = jax.random.split(key)
    b = family.objective.prepare(batch, r_prep, step=jnp.int32(0))
    g = jax.grad(lambda p: family.objective.loss(family.module.apply, p, b, r_loss)[0])(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt

  it = family.data.train_iterator(global_batch=batch, seed=seed)
  for i in range(steps):
    params, opt = step(params, opt, {k: jnp.asarray(v) for k, v in next(it).items()}, jax.random.PRNGKey(i))
  return params
