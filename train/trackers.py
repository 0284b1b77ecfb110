"""Experiment trackers behind one small interface: TensorBoard always (workdir/tensorboard), and the second one
`config.tracker` names ("wandb": Weights & Biases, offline unless WANDB_MODE says otherwise, files under
workdir/wandb; `wandb` is not in requirements.txt: `pip install wandb` to use it).

Every tracker is wrapped in `Guarded`: the first exception it raises prints one warning line and turns that
tracker off; training never stops for a tracker (metrics.jsonl and the console are written by the Reporter itself).
Only process 0 tracks.
"""
import json
import os
import sys
import uuid
from typing import Any, Mapping, Protocol

TRACKERS = ("tensorboard", "wandb")


class Tracker(Protocol):
  name: str

  def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None: ...

  def text(self, tag: str, text: str, step: int) -> None: ...

  def flush(self) -> None: ...

  def close(self) -> None: ...


def import_tensorboardx():
  """tensorboardX, imported without torch: where torch is installed, tensorboardX imports it at import time only to
  accept torch tensors (0.2-2.3 s and ~150 MB in every launch.py process, train/README.md, "Trackers"); we log
  Python floats and strings. A process that has imported torch already keeps it."""
  if "torch" in sys.modules:
    import tensorboardX
    return tensorboardX
  sys.modules["torch"] = None   # makes `import torch` raise ImportError, which tensorboardX handles
  try:
    import tensorboardX
  finally:
    del sys.modules["torch"]
  return tensorboardX


class TensorBoard:
  name = "tensorboard"

  def __init__(self, directory: str):
    self._writer = import_tensorboardx().SummaryWriter(directory)

  def scalars(self, prefix, values, step):
    for k, v in values.items():
      self._writer.add_scalar(f"{prefix}/{k}", v, step)

  def text(self, tag, text, step):
    self._writer.add_text(tag, text, step)

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()


class Wandb:
  """One W&B run per workdir (its id is kept in workdir/wandb_run_id, so a resumed run continues it)."""
  name = "wandb"

  def __init__(self, workdir: str, config: Mapping[str, Any]):
    import wandb
    id_file = os.path.join(workdir, "wandb_run_id")
    run_id = open(id_file).read().strip() if os.path.exists(id_file) else uuid.uuid4().hex[:12]
    with open(id_file, "w") as f:
      f.write(run_id)
    self._run = wandb.init(project=os.environ.get("WANDB_PROJECT", "lmkit"), dir=workdir, id=run_id,
                           resume="allow", mode=os.environ.get("WANDB_MODE", "offline"),
                           config=json.loads(json.dumps(dict(config), default=str)), reinit="finish_previous")

  def scalars(self, prefix, values, step):
    self._run.log({f"{prefix}/{k}": v for k, v in values.items()}, step=step)

  def text(self, tag, text, step):
    import wandb
    self._run.log({tag: wandb.Html(f"<pre>{text}</pre>")}, step=step)

  def flush(self):
    pass

  def close(self):
    self._run.finish()


class Guarded:
  """A tracker whose failures print one warning and switch it off (training goes on)."""

  def __init__(self, name: str, make):
    self.name = name
    self._tracker = None
    self._tracker = self._guard(make)

  def _guard(self, fn, *args):
    try:
      return fn(*args)
    except Exception as e:  # noqa: BLE001 - a tracker must never stop training
      self._tracker = None
      print(f"warning: tracker {self.name} failed ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
            "training continues without it", flush=True)
      return None

  @property
  def active(self) -> bool:
    return self._tracker is not None

  def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
    if self._tracker is not None:
      self._guard(self._tracker.scalars, prefix, values, step)

  def text(self, tag: str, text: str, step: int) -> None:
    if self._tracker is not None:
      self._guard(self._tracker.text, tag, text, step)

  def flush(self) -> None:
    if self._tracker is not None:
      self._guard(self._tracker.flush)

  def close(self) -> None:
    if self._tracker is not None:
      self._guard(self._tracker.close)
      self._tracker = None


def make_trackers(workdir: str, name: str, config: Mapping[str, Any]) -> list[Guarded]:
  """TensorBoard, plus `name`'s tracker when it is not TensorBoard."""
  trackers = [Guarded("tensorboard", lambda: TensorBoard(os.path.join(workdir, "tensorboard")))]
  if name == "wandb":
    trackers.append(Guarded("wandb", lambda: Wandb(workdir, config)))
  return trackers
