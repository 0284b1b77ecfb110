"""`launch.py --workdir=RUN --mode=eval --follow`: an evaluator beside a training run.

It reads the run's stored config (waiting for the first checkpoint), then polls the run's checkpoint folder
read-only and evaluates each committed step once, in step order, as the trainer's own evaluation does (the same
fixed validation batches and masking key); results go to `RUN/eval_results.jsonl` (one record per step, marked
`"follow": true`) and to TensorBoard under `RUN/eval_follow/`; the family's own evaluations (Family.evals), all
of them at every step, to `RUN/analysis.jsonl` (marked the same). Nothing is written into `RUN/checkpoints`. A
restarted follower skips the steps already in eval_results.jsonl. It ends after evaluating the run's last step
(`train.num_steps` of the stored config), or after `follow_timeout_s` without a new checkpoint.

A step the trainer deletes (checkpoint.max_to_keep) before it is read is skipped with a one-line note; keep enough
checkpoints, or evaluate more often than the trainer saves.
"""
import json
import os
import time
from typing import Any, Callable

import flax.linen as nn
import jax

from train import checkpoint as ckpt_lib
from train import stored_config
from train.errors import ConfigError
from train.evaluation import evaluate, run_evals
from train.reporting import append_jsonl, numeric_leaves
from train.experiment import build_experiment
from train.step import make_eval_step
from train.trackers import import_tensorboardx


def _done_steps(path: str) -> set[int]:
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return {r["step"] for r in records if r.get("follow")}


def follow(workdir: str, overrides: dict[str, Any] | None = None, *, poll_s: float = 5.0,
           timeout_s: float = 3600.0, note: Callable[[str], None] = print) -> list[int]:
  """Evaluates every committed step of `workdir` once (module docstring); returns the steps evaluated now."""
  start = time.time()
  while True:   # the run may not have committed its first checkpoint yet
    try:
      stored = stored_config.stored_run_config(workdir)
      break
    except ConfigError as e:
      if "holds no checkpoint" not in str(e) or time.time() - start > timeout_s:
        raise
      time.sleep(poll_s)
  config = stored_config.eval_config(stored, overrides or {}, "eval")
  exp = build_experiment(config)
  results = os.path.join(workdir, "eval_results.jsonl")
  done = _done_steps(results)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  writer = None
  if jax.process_index() == 0:
    writer = import_tensorboardx().SummaryWriter(os.path.join(workdir, "eval_follow"))
  eval_step = jax.jit(make_eval_step(exp.family))
  evaluated, last_new = [], time.time()
  try:
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
      while True:
        ckpt.reload()
        for step in ckpt.all_steps():
          if step in done:
            continue
          try:
            params = ckpt.restore_params(step, exp.abstract_state.params)
          except Exception as e:  # noqa: BLE001 - deleted by the trainer's max_to_keep while being read
            note(f"note: step {step} could not be read ({type(e).__name__}); skipped")
            done.add(step)
            continue
          metrics = evaluate(exp, params, eval_step)
          record = {"step": step, "follow": True, **metrics}
          if writer is not None:
            for k, v in metrics.items():
              writer.add_scalar(f"eval/{k}", v, step)
            writer.flush()
            with open(results, "a") as f:
              f.write(json.dumps(record) + "\n")
          note(json.dumps(record))
          if exp.family.evals:
            analysis = run_evals(exp.family.evals, params)
            append_jsonl(workdir, "analysis.jsonl", {"step": step, "follow": True, **analysis})
            if writer is not None:
              for k, v in numeric_leaves(analysis).items():
                writer.add_scalar(f"analysis/{k}", v, step)
          done.add(step)
          evaluated.append(step)
          last_new = time.time()
        final = int(stored_config.stored_run_config(workdir)["train"]["num_steps"])   # a resumed run may change it
        if final in done:
          break
        if time.time() - last_new > timeout_s:
          note(f"note: no new checkpoint for {timeout_s:.0f}s; stopping")
          break
        time.sleep(poll_s)
  finally:
    ckpt.close()
    if writer is not None:
      writer.close()
  return evaluated
