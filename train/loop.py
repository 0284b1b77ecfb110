"""The training loop: `train(config, workdir)` runs an experiment (train/experiment.py) from its restored state
(train/restore.py) to `train.num_steps`, saving, evaluating and sampling on the config's cadence. One process's
view; every process runs the same loop on its rows.

Per step: put the batch on the devices, run the ahead-of-time compiled step, log the previous step's metrics (so
fetching them overlaps the next dispatch), then save / evaluate / sample when due. A SIGTERM (preemption) saves at
the current step and exits; `train.stop_after_steps` ends the invocation the same way (a time slice).
"""
import os
import signal
import time
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from train import checkpoint as ckpt_lib
from train import stored_config
from train.evaluation import due, evaluate, run_evals
from train.experiment import Experiment, build_experiment, check_workdir, param_overview
from train.flops import cpu_16bit_note, total_peak_flops
from train.profiling import StepProfiler
from train.reporting import Reporter
from train.restore import initial_state, keep_data_shards
from train.step import make_eval_step


class Preemption:
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


def _reporter(exp: Experiment, workdir: str, start: int, peak_flops: float) -> Reporter:
  c, fam = exp.config, exp.family
  tokens_per_step = c.train.batch_size * fam.tokens_per_example
  return Reporter(workdir, total_steps=c.train.num_steps, start_step=start, tokens_per_step=tokens_per_step,
                  flops_per_step=fam.flops_per_token(fam.tokens_per_example) * tokens_per_step,
                  peak_flops=peak_flops,
                  log_every=c.train.log_every, tracker=c.tracker, config=stored_config.to_jsonable(c),
                  baseline=fam.baseline() if fam.baseline and jax.process_index() == 0 else None)


def compute_dtype(family) -> str:
  """The family's compute dtype (its hyperparameters' `dtype`; float32 for a family that declares none)."""
  return getattr(family.hparams, "dtype", "float32")


def checkpoint_meta(exp: Experiment) -> dict:
  """What a training checkpoint stores beside the state: the config, the family's compat values, the data shards."""
  return {"config": stored_config.to_jsonable(exp.config), **exp.family.compat, "process_count": jax.process_count(),
          "data_num_shards": exp.config.data.num_shards or jax.process_count()}


def _every(n: int, done: int) -> bool:
  return bool(n) and done % n == 0


def train(config: Any, workdir: str) -> dict[str, float]:
  """Trains to `train.num_steps` (resuming if the workdir has a checkpoint). Returns the last eval metrics."""
  check_workdir(workdir)
  notes: list[str] = []
  exp = build_experiment(keep_data_shards(config, os.path.join(workdir, "checkpoints"), notes.append))
  c, fam = exp.config, exp.family
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=c.checkpoint.max_to_keep,
                               async_save=c.checkpoint.async_save)
  if jax.process_index() == 0:
    stored_config.write_if_fresh(c, workdir, ckpt.latest_step() is not None)
  dtype = compute_dtype(fam)   # sets the peak the MFU is measured against (measured outside the mesh on CPU)
  peak_flops = total_peak_flops(tuple(jax.devices()), c.train.peak_flops_per_device, dtype)
  notes += [n for n in [cpu_16bit_note(jax.devices(), dtype)] if n]
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    data_iter = exp.train_iterator()
    try:
      state, data_iter = initial_state(exp, ckpt, data_iter, notes.append)
    except BaseException:
      ckpt.close()
      raise
    start = int(jax.device_get(state.step))
    stop_at = min(c.train.num_steps, start + c.train.stop_after_steps) if c.train.stop_after_steps else None
    reporter = _reporter(exp, workdir, start, peak_flops)
    for n in [param_overview(exp)] + notes:
      reporter.note(n)
    profiler = StepProfiler(workdir, c.profile.start_step, c.profile.num_steps)
    t = time.time()
    step_fn = exp.compiled_train_step()
    reporter.note(f"compiled the train step in {time.time() - t:.1f}s")
    eval_step = jax.jit(make_eval_step(fam))
    preemption = Preemption()
    final_eval: dict[str, float] = {}
    pending = None  # (step, metrics) of the step dispatched last, fetched after the next dispatch
    reporter.start_timer(start)
    try:
      for step in range(start, c.train.num_steps):
        with profiler.step(step + 1):
          state, metrics = step_fn(state, exp.to_device(next(data_iter)))
        if (note := profiler.after(step + 1, metrics)) is not None:
          reporter.note(note)
        if pending is not None:
          reporter.train(*pending)
        pending, done = (step + 1, metrics), step + 1
        last, preempted = done == c.train.num_steps, preemption.should_stop()
        stop = preempted or done == stop_at
        if stop or last or _every(c.train.checkpoint_every, done):
          reporter.train(*pending)  # a checkpoint never holds a state whose loss was not checked
          pending = None
          ckpt.save(done, state, data_iter, checkpoint_meta(exp))
        if preempted:
          reporter.note(f"SIGTERM: saved a checkpoint at step {done}; exiting")
          break
        if last or _every(c.train.eval_every, done):
          final_eval = evaluate(exp, state.params, eval_step)
          reporter.eval(done, final_eval)
        if evals := due(fam.evals, done, last):
          reporter.analysis(done, run_evals(evals, state.params))
        if fam.decode and fam.prompts and (last or _every(c.train.sample_every, done)):
          reporter.text(done, "samples", "\n---\n".join(fam.decode(state.params, list(fam.prompts), exp.mesh)))
        if stop:
          reporter.note(f"train.stop_after_steps={c.train.stop_after_steps}: saved a checkpoint at step {done}; "
                        "launch again to continue")
          break
      if pending is not None:
        reporter.train(*pending)
    finally:
      profiler.close()
      preemption.close()
      ckpt.close()
      reporter.close()
  return final_eval
