"""Hugging Face directories and state dicts: one reader and writer of config.json + model.safetensors for every
family, and the state-dict reader into our parameter layout (full-shape checks, unused-key accounting)."""
import json
import os
from typing import Sequence

import numpy as np


class StateDictReader:
  """`reader(key, shape, transpose=False, source=None)`: the tensor `key` as float32 of our `shape`.

  The checkpoint tensor must have exactly the shape `source` (default: `shape`, reversed when `transpose`, as a
  torch Linear stores [out, in]); it is then transposed if asked and reshaped to `shape`. Checking the full shape,
  not only the size, refuses a tensor of the right size in the wrong layout (e.g. [3d, d] where [d, 3d] belongs).
  """

  def __init__(self, state: dict[str, np.ndarray], model: str, ignore_suffixes: Sequence[str] = ()):
    self.state, self.model, self.used = state, model, set()
    self._ignore = tuple(ignore_suffixes)

  def __call__(self, key: str, shape: Sequence[int], transpose: bool = False,
               source: Sequence[int] | None = None) -> np.ndarray:
    if key not in self.state:
      raise KeyError(f"{self.model} checkpoint lacks {key}")
    self.used.add(key)
    value = np.asarray(self.state[key], np.float32)
    expected = tuple(source) if source is not None else tuple(reversed(shape)) if transpose else tuple(shape)
    if tuple(value.shape) != expected:
      raise ValueError(f"{self.model} checkpoint: {key} has shape {tuple(value.shape)}, expected {expected} "
                       "(config mismatch?)")
    value = value.T if transpose else value
    return np.ascontiguousarray(value).reshape(tuple(shape))

  def mark_used(self, key: str) -> None:
    self.used.add(key)

  def check_all_used(self) -> None:
    unknown = sorted(k for k in self.state if k not in self.used and not k.endswith(self._ignore))
    if unknown:
      raise ValueError(f"{self.model} checkpoint has keys we do not map: {unknown[:5]}"
                       f"{' ...' if len(unknown) > 5 else ''}")


def read_hf_dir(path: str) -> tuple[dict, dict[str, np.ndarray]]:
  """A Hugging Face model directory -> (its config.json, its model.safetensors tensors as NumPy)."""
  from safetensors.numpy import load_file
  with open(os.path.join(path, "config.json")) as f:
    config = json.load(f)
  weights = os.path.join(path, "model.safetensors")
  if not os.path.exists(weights):
    raise FileNotFoundError(f"{weights} not found: convert pytorch_model.bin to safetensors first")
  return config, load_file(weights)


def write_hf_dir(path: str, state: dict[str, np.ndarray], config: dict) -> None:
  """(tensors, config.json dict) -> a directory `from_pretrained` loads (safetensors marked as PyTorch's)."""
  from safetensors.numpy import save_file
  os.makedirs(path, exist_ok=True)
  save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
