"""The CoT2 family's settings as objects: objectives from the config's `objective` section, and the batch layout
of each data format (the wiring file configs/families/cot2.py only assembles them).

Legend: L digits of an MNNS line, V vocabulary size.
"""
import dataclasses
from typing import Any

from models.cot2.objective import CsftObjective, DiscreteCotObjective, GrpoObjective
from models.family import BatchField, Objective


def loss_steps(text: str, num_digits: int) -> tuple[tuple[int, ...], bool]:
  """objective.loss_steps: comma-separated thought steps and "h" (the final answer CE), e.g. "0,1,2,h"."""
  parts = [p.strip() for p in str(text).split(",") if p.strip()]
  try:
    steps = tuple(int(p) for p in parts if p != "h")
  except ValueError:
    raise ValueError(f"objective.loss_steps={text!r}: use comma-separated step numbers 0..{num_digits - 2} and 'h'"
                     ) from None
  return steps, "h" in parts


def objectives(o: Any, num_digits: int) -> tuple[Objective, Objective]:
  """(training objective, evaluation objective) of objective.method: "discrete", "csft" or "grpo"."""
  L = num_digits
  if o.method == "discrete":
    obj = DiscreteCotObjective(L)
  elif o.method == "csft":
    steps, answer = loss_steps(o.loss_steps, L)
    if o.curriculum_steps < 0:
      raise ValueError(f"objective.curriculum_steps={o.curriculum_steps} must be >= 0")
    obj = CsftObjective(L, o.supervision, steps, answer, int(o.curriculum_steps))
  else:
    if not 0 < o.clip_epsilon < 1 or not 0 < o.support_floor < 1 or o.dirichlet_scale <= 0:
      raise ValueError("objective.clip_epsilon and objective.support_floor must lie in (0, 1) and "
                       "objective.dirichlet_scale must be > 0")
    obj = GrpoObjective(L, o.exploration, int(o.k), bool(o.normalize), int(o.rollouts), float(o.clip_epsilon),
                        float(o.support_floor), float(o.dirichlet_scale))
  return obj, dataclasses.replace(obj, train=False)


def batch_spec(fmt: str, num_digits: int, vocab_size: int) -> dict[str, BatchField]:
  """The discrete format's token line [2L + 3]; the continuous formats' prompt [L + 1] and targets [L, V]."""
  L = num_digits
  spec = {"answer": BatchField((), "int32", ()), "valid": BatchField((), "float32", ())}
  if fmt == "discrete":
    spec["tokens"] = BatchField((2 * L + 3,), "int32", ("length",))
  else:
    spec["prompt"] = BatchField((L + 1,), "int32", ("length",))
    spec["targets"] = BatchField((L, vocab_size), "float32", (None, "vocab"))
  return spec
