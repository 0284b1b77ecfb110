"""Metrics: console lines with tokens/s, MFU and ETA, a progress bar, metrics.jsonl, and the trackers
(TensorBoard events, optionally Weights & Biases: train/trackers.py).

Only process 0 writes; every process computes the same values.
"""
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np
import tqdm
from absl import logging

from train.errors import NonFiniteError

# Checked before a state is logged or saved: a finite loss with non-finite gradients would otherwise write a NaN
# checkpoint (the loss is computed from the parameters before the update, the norms after it).
GUARDED = ("loss", "grad_norm", "update_norm", "param_norm")


class Reporter:
  def __init__(self, workdir: str, *, total_steps: int, start_step: int, tokens_per_step: int,
               flops_per_step: float, peak_flops: float, log_every: int, tracker: str = "tensorboard",
               config: Any = None, baseline: dict[str, float] | None = None):
    self.enabled, self.workdir = jax.process_index() == 0, workdir
    self.baseline = baseline or {}   # shown beside the eval metrics it names (the family's no-context scores)
    self.total_steps, self.log_every = total_steps, max(log_every, 1)
    self.tokens_per_step, self.flops_per_step, self.peak_flops = tokens_per_step, flops_per_step, peak_flops
    self._t0, self._last_step, self._last_time = time.time(), start_step, None
    self._trackers, self._jsonl, self._bar = [], None, None
    if self.enabled:
      from train.trackers import make_trackers
      os.makedirs(workdir, exist_ok=True)
      self._trackers = make_trackers(workdir, tracker, config or {})
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      # The bar only on a terminal: in log files the console lines below carry the same information.
      self._bar = tqdm.tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True,
                            mininterval=1.0, disable=not sys.stderr.isatty())

  def start_timer(self, step: int) -> None:
    """Called once compilation is done, so the first window's throughput excludes it."""
    self._last_step, self._last_time = step, time.time()

  def train(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
    """`step` counts updates applied (1 after the first step). Raises NonFiniteError on a non-finite loss,
    gradient norm, update norm or parameter norm (the state of that step is then never saved)."""
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    bad = [f"{k} {values[k]}" for k in GUARDED if k in values and not np.isfinite(values[k])]
    if bad:
      raise NonFiniteError(f"non-finite {', '.join(bad)} at step {step}: stopped without saving it (the last "
                           "checkpoint is kept); lower optim.lr, raise optim.warmup_steps or check the data")
    if not self.enabled:
      return values
    self._jsonl.write(json.dumps({"step": step, "split": "train", **values}) + "\n")
    self._bar.update(1)
    if step % self.log_every == 0 or step == self.total_steps:
      now = time.time()
      if self._last_time is not None and step > self._last_step:
        dt = (now - self._last_time) / (step - self._last_step)
        values["step_time_s"] = dt
        values["tokens_per_s"] = self.tokens_per_step / dt
        if self.peak_flops:
          values["mfu"] = self.flops_per_step / dt / self.peak_flops
        eta = dt * (self.total_steps - step)
      else:
        eta = float("nan")
      self._last_step, self._last_time = step, now
      for t in self._trackers:
        t.scalars("train", values, step)
      self._jsonl.flush()
      line = (f"step {step}/{self.total_steps} | loss {values['loss']:.4f} | lr {values.get('lr', 0):.2e}"
              + (f" | {values['tokens_per_s']:,.0f} tok/s" if "tokens_per_s" in values else "")
              + (f" | {mfu_text(values['mfu'])}" if "mfu" in values else "")
              + (f" | ETA {eta:,.0f}s" if np.isfinite(eta) else ""))
      self._bar.write(line)
      logging.info("%s", line)
    return values

  def eval(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    self._jsonl.write(json.dumps({"step": step, "split": "eval", **metrics}) + "\n")
    self._jsonl.flush()
    for t in self._trackers:
      t.scalars("eval", metrics, step)
      t.flush()
    msg = f"eval @ {step}: " + " | ".join(
        f"{k} {v:.4f}" + (f" (without context {self.baseline[k]:.4f})" if k in self.baseline else "")
        for k, v in metrics.items())
    self._bar.write(msg)
    logging.info("%s", msg)

  def analysis(self, step: int, results: dict[str, Any]) -> None:
    """The family's own evaluations (Family.evals): a record in analysis.jsonl, numeric leaves to the trackers."""
    if not self.enabled:
      return
    append_jsonl(self.workdir, "analysis.jsonl", {"step": step, **results})
    for t in self._trackers:
      t.scalars("analysis", numeric_leaves(results), step)
      t.flush()
    self._bar.write(f"analysis @ {step}: {', '.join(results)} (analysis.jsonl)")

  def text(self, step: int, tag: str, text: str) -> None:
    if not self.enabled:
      return
    for t in self._trackers:
      t.text(tag, text, step)
    self._bar.write(f"{tag} @ {step}:\n{text}")

  def note(self, message: str) -> None:
    if self.enabled:
      self._bar.write(message)
      logging.info("%s", message)

  def close(self) -> None:
    if self.enabled:
      self._bar.close()
      for t in self._trackers:
        t.close()
      self._jsonl.close()


def append_jsonl(workdir: str, name: str, record: dict[str, Any]) -> None:
  """One JSON record as a line of workdir/name (process 0 only)."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, name), "a") as f:
      f.write(json.dumps(record) + "\n")


def numeric_leaves(results: dict[str, Any], prefix: str = "") -> dict[str, float]:
  """The finite numeric leaves of nested results as 'name/key' -> float (what a tracker plots)."""
  out = {}
  for k, v in results.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(numeric_leaves(v, key + "/"))
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
      out[key] = float(v)
  return out


def mfu_text(mfu: float) -> str:
  """The console's MFU: a reading above 100% means the peak the run assumed (train.peak_flops_per_device, or the
  measured CPU peak) is below what the step achieved, so it is shown as unreliable instead of as a figure."""
  if mfu > 1.0:
    return (f"MFU n/a (the step ran at {100 * mfu:.0f}% of the assumed peak: set train.peak_flops_per_device to the "
            "chip's)")
  return f"MFU {100 * mfu:.1f}%"
