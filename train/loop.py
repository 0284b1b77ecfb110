"""The generic training loop, and the eval and decode modes. Families plug in through models/registry.py.

Restore order at start-up: the workdir's latest checkpoint -> `checkpoint.init_from` (weights only) -> scratch.
"""
import dataclasses
import json
import os
import signal
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from data.corpus import Corpus, load_corpus
from data.pipeline import make_iterator, shard_layout, to_global
from data.vocab import Vocabulary, build_vocab
from models.registry import ModelBundle, build
from train import checkpoint as ckpt_lib
from train.errors import ConfigError
from train.flops import total_peak_flops
from train.mesh import data_parallel_size, logical_sharding, make_mesh
from train.optim import build_optimizer
from train.reporting import Reporter
from train.state import TrainState, make_init_fn, state_shardings
from train.step import make_eval_step, make_train_step


@dataclasses.dataclass
class Experiment:
  """Everything a run needs, built and validated before any compilation."""
  config: Any
  mesh: Mesh
  rules: tuple
  corpus: Corpus
  vocab: Vocabulary
  bundle: ModelBundle
  tx: Any
  schedule: Any
  abstract_state: TrainState
  state_sharding: TrainState
  batch_sharding: jax.sharding.NamedSharding
  task: Any = None    # a labelled task (data.task) instead of language-model documents

  @property
  def model_vocab_size(self) -> int:
    return self.bundle.hparams.vocab_size

  def _iterator(self, split: str, global_batch: int, seed: int):
    from data.tasks import make_classification_iterator
    c = self.config
    return make_classification_iterator(getattr(self.task, split), self.vocab, seq_len=c.data.seq_len,
                                        global_batch=global_batch, seed=seed, num_shards=c.data.num_shards,
                                        process_index=jax.process_index(), process_count=jax.process_count())

  def train_iterator(self):
    c = self.config
    if self.task is not None:
      return self._iterator("train", c.train.batch_size, c.seed)
    return make_iterator(self.corpus.train, self.vocab, seq_len=c.data.seq_len, global_batch=c.train.batch_size,
                         seed=c.seed, num_shards=c.data.num_shards, packing=c.data.packing)

  def init_state(self, seed: int | None = None) -> TrainState:
    """A fresh, sharded TrainState (call under `jax.set_mesh(self.mesh)`)."""
    init = jax.jit(make_init_fn(self.bundle.module, self.tx, self.config.data.seq_len),
                   out_shardings=self.state_sharding)
    return init(jax.random.PRNGKey(self.config.seed if seed is None else seed))

  def compiled_train_step(self):
    """The jitted, ahead-of-time compiled train step with state and batch shardings from the logical rules."""
    c = self.config
    batch = {k: jax.ShapeDtypeStruct((c.train.batch_size, c.data.seq_len), jnp.int32, sharding=self.batch_sharding)
             for k in ("tokens", "segment_ids", "positions")}
    if self.task is not None:
      batch["labels"] = jax.ShapeDtypeStruct((c.train.batch_size,), jnp.int32, sharding=jax.sharding.NamedSharding(
          self.mesh, jax.P(self.batch_sharding.spec[0])))
    step_fn = jax.jit(make_train_step(self.bundle, self.tx, self.schedule, c.train.grad_accum_steps),
                      in_shardings=(self.state_sharding, {k: v.sharding for k, v in batch.items()}),
                      out_shardings=(self.state_sharding, None), donate_argnums=0)
    return step_fn.lower(self.abstract_state, batch).compile()

  def eval_iterator(self):
    """The same first `eval.num_batches` validation batches at every evaluation."""
    c = self.config
    if self.task is not None:
      return self._iterator("validation", c.eval.batch_size, c.seed + 1)
    return make_iterator(self.corpus.validation, self.vocab, seq_len=c.data.seq_len,
                         global_batch=c.eval.batch_size, seed=c.seed + 1, num_shards=c.data.num_shards,
                         packing=c.data.packing)


def _check_batch(name: str, batch: int, mesh: Mesh, accum: int = 1) -> None:
  dp = data_parallel_size(mesh)
  if batch % accum or (batch // accum) % dp:
    raise ConfigError(f"{name}={batch} (with train.grad_accum_steps={accum}) is not divisible into micro-batches "
                      f"that split over the data-parallel size mesh.data*mesh.fsdp={dp}; set --config.{name} to "
                      f"a multiple of {dp * accum}")


def build_experiment(config: Any, devices=None) -> Experiment:
  """Validates the config and builds mesh, data, vocabulary, model and shardings. Compiles nothing."""
  mesh = make_mesh(config.mesh, devices)
  _check_batch("train.batch_size", config.train.batch_size, mesh, config.train.grad_accum_steps)
  _check_batch("eval.batch_size", config.eval.batch_size, mesh)
  for name, batch in (("train.batch_size", config.train.batch_size), ("eval.batch_size", config.eval.batch_size)):
    try:
      shard_layout(batch, config.data.num_shards, jax.process_index(), jax.process_count())
    except ValueError as e:
      raise ConfigError(f"{name}: {e}") from None
  try:
    if config.data.corpus.startswith("seqio:"):
      from data import seqio_interop
      corpus = seqio_interop.load_task_corpus(config.data.corpus[len("seqio:"):], tuple(config.data.seqio_modules))
    else:
      corpus = load_corpus(config.data.corpus, config.data.max_doc_chars, config.data.validation_percent)
  except FileNotFoundError as e:
    raise ConfigError(str(e)) from None
  try:
    vocab = build_vocab(config.data, corpus.train, corpus.fingerprint)
    bundle = build(config, vocab)
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(str(e)) from None
  task = None
  if config.data.task:
    from data.tasks import stdlib_packages
    if config.data.task != "stdlib_packages":
      raise ConfigError(f"data.task={config.data.task!r}: use '' (language modelling) or 'stdlib_packages'")
    task = stdlib_packages(config.data.num_classes, config.data.max_doc_chars,
                           validation_percent=config.data.validation_percent)
  rules = tuple(tuple(r) for r in config.logical_axis_rules)
  tx, schedule = build_optimizer(config.optim, config.train.num_steps)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract, shardings = state_shardings(bundle.module, tx, config.data.seq_len, mesh, rules)
    batch_sharding = logical_sharding(mesh, rules, "batch", "length")
  return Experiment(config, mesh, rules, corpus, vocab, bundle, tx, schedule, abstract, shardings, batch_sharding,
                    task)


def param_overview(exp: Experiment) -> str:
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(exp.abstract_state.params))
  return (f"model {exp.config.model.name}: {n:,} parameters | vocab {exp.vocab.size} (embedding "
          f"{exp.model_vocab_size}) | mesh {dict(exp.mesh.shape)}")


def _meta(exp: Experiment) -> dict:
  return {"config": exp.config.to_dict(), "model_vocab_size": exp.model_vocab_size,
          "process_count": jax.process_count()}


class _Preemption:
  """SIGTERM sets a flag; the loop saves at the current step and exits cleanly. Processes agree on it."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def should_stop(self) -> bool:
    if jax.process_count() > 1:
      return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))
    return self.requested

  def close(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)


def evaluate(exp: Experiment, params: Any, eval_step=None) -> dict[str, float]:
  """Target-weighted averages over `eval.num_batches` fixed validation batches (fixed masking key)."""
  eval_step = eval_step or jax.jit(make_eval_step(exp.bundle))
  it = exp.eval_iterator()
  rng = jax.random.PRNGKey(exp.config.seed + 2)
  totals: dict[str, float] = {}
  count = 0.0
  for i in range(exp.config.eval.num_batches):
    m = jax.device_get(eval_step(params, to_global(next(it), exp.batch_sharding), jax.random.fold_in(rng, i)))
    n = float(m["num_targets"])
    count += n
    for k, v in m.items():
      totals[k] = totals.get(k, 0.0) + (float(v) if k == "num_targets" else float(v) * n)
  return {k: (v if k == "num_targets" else v / max(count, 1.0)) for k, v in totals.items()}


def _initial_state(exp: Experiment, ckpt: ckpt_lib.Checkpointer, data_iter, reporter_note) -> tuple[TrainState, Any]:
  step = ckpt.latest_step()
  if step is not None:
    ckpt_lib.check_compatible(ckpt.meta(step), exp.model_vocab_size, f"{ckpt.directory}/{step}")
    reporter_note(f"resuming from {ckpt.directory} step {step}")
    return ckpt.restore(step, exp.abstract_state, data_iter)
  state = exp.init_state()
  if exp.config.checkpoint.init_from:
    src = ckpt_lib.Checkpointer(os.path.join(exp.config.checkpoint.init_from, "checkpoints"), read_only=True)
    src_step = src.latest_step()
    if src_step is None:
      raise ConfigError(f"checkpoint.init_from={exp.config.checkpoint.init_from!r} holds no checkpoint")
    ckpt_lib.check_compatible(src.meta(src_step), exp.model_vocab_size, f"{src.directory}/{src_step}")
    params, loaded = src.restore_matching_params(src_step, exp.abstract_state.params, state.params)
    state = state.replace(params=params)
    reporter_note(f"initialised {loaded} weights from {src.directory} step {src_step} (the rest: fresh)")
    src.close()
  return state, data_iter


def train(config: Any, workdir: str, *, stop_at_step: int | None = None) -> dict[str, float]:
  """Trains to `train.num_steps` (resuming if the workdir has a checkpoint). Returns the final eval metrics.

  `stop_at_step` ends the run early without a final save, as a crash would (for resume tests).
  """
  exp = build_experiment(config)
  c = config
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=c.checkpoint.max_to_keep,
                               async_save=c.checkpoint.async_save)
  peak_flops = total_peak_flops(tuple(jax.devices()), c.train.peak_flops_per_device)  # outside the mesh context
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    data_iter = exp.train_iterator()
    notes = []
    state, data_iter = _initial_state(exp, ckpt, data_iter, notes.append)
    start = int(jax.device_get(state.step))
    tokens_per_step = c.train.batch_size * c.data.seq_len
    reporter = Reporter(workdir, total_steps=c.train.num_steps, start_step=start, tokens_per_step=tokens_per_step,
                        flops_per_step=exp.bundle.flops_per_token(c.data.seq_len) * tokens_per_step,
                        peak_flops=peak_flops,
                        log_every=c.train.log_every)
    for n in [param_overview(exp)] + notes:
      reporter.note(n)
    t = time.time()
    step_fn = exp.compiled_train_step()
    reporter.note(f"compiled the train step in {time.time() - t:.1f}s")
    eval_step = jax.jit(make_eval_step(exp.bundle))
    preemption = _Preemption()
    final_eval: dict[str, float] = {}
    pending = None  # (step, metrics) of the step dispatched last, fetched after the next dispatch
    reporter.start_timer(start)
    try:
      for step in range(start, c.train.num_steps):
        batch = to_global(next(data_iter), exp.batch_sharding)
        state, metrics = step_fn(state, batch)
        if pending is not None:
          reporter.train(*pending)
        pending = (step + 1, metrics)
        done = step + 1
        stop = preemption.should_stop()
        last = done == c.train.num_steps
        if stop or last or (c.train.checkpoint_every and done % c.train.checkpoint_every == 0):
          reporter.train(*pending)  # a checkpoint never holds a state whose loss was not checked
          pending = None
          ckpt.save(done, state, data_iter, _meta(exp))
        if stop:
          reporter.note(f"SIGTERM: saved a checkpoint at step {done}; exiting")
          break
        if last or (c.train.eval_every and done % c.train.eval_every == 0):
          final_eval = evaluate(exp, state.params, eval_step)
          reporter.eval(done, final_eval)
        if exp.bundle.sample_texts and (last or (c.train.sample_every and done % c.train.sample_every == 0)):
          samples = exp.bundle.sample_texts(state.params, exp.vocab, list(c.decode.prompts), exp.mesh)
          reporter.text(done, "samples", "\n---\n".join(samples))
        if stop_at_step is not None and done >= stop_at_step:
          break
      if pending is not None:
        reporter.train(*pending)
    finally:
      preemption.close()
      ckpt.close()
      reporter.close()
  return final_eval


def _restore_latest(exp: Experiment, workdir: str, params_only: bool = True) -> tuple[int, Any]:
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  if step is None:
    raise ConfigError(f"--workdir={workdir} holds no checkpoint; train first (--mode=train)")
  ckpt_lib.check_compatible(ckpt.meta(step), exp.model_vocab_size, f"{ckpt.directory}/{step}")
  params = ckpt.restore_params(step, exp.abstract_state.params) if params_only else None
  ckpt.close()
  return step, params


def load_trained(config: Any, workdir: str) -> tuple[Experiment, int, Any]:
  """(experiment, step, params) of a training workdir's latest checkpoint, for benchmarks and notebooks.
  The params are replicated on this process's mesh; call under `jax.set_mesh(exp.mesh)` if you shard further."""
  exp = build_experiment(config)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    step, params = _restore_latest(exp, workdir)
  return exp, step, params


def run(config: Any, workdir: str, mode: str = "train", text: str = "") -> Any:
  """Entry point used by launch.py: writes the resolved config, then trains, evaluates or decodes."""
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(config.to_dict(), f, indent=2, default=str)
  if mode == "train":
    return train(config, workdir)
  exp = build_experiment(config)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    step, params = _restore_latest(exp, workdir)
    if mode == "eval":
      metrics = evaluate(exp, params)
      print(json.dumps({"step": step, **metrics}), flush=True)
      if jax.process_index() == 0:
        with open(os.path.join(workdir, "eval_results.jsonl"), "a") as f:
          f.write(json.dumps({"step": step, **metrics}) + "\n")
      return metrics
    if mode == "decode":
      if exp.bundle.sample_texts is None:
        raise ConfigError(f"model.name={config.model.name!r} has no decode mode")
      prompts = [text] if text else list(config.decode.prompts)
      outputs = exp.bundle.sample_texts(params, exp.vocab, prompts, exp.mesh)
      for p, o in zip(prompts, outputs):
        print(f"--- input:\n{p}\n--- output:\n{o}", flush=True)
      return outputs
  raise ConfigError(f"--mode={mode!r}: use train, eval or decode")


