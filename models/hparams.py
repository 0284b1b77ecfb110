"""Building a family's frozen hyperparameter dataclass from the `model` section of a config."""
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def from_model_config(cls: type[T], model_cfg: Any, vocab_size: int) -> T:
  """Keeps the config keys that are fields of `cls` (family-specific keys of other families are ignored)."""
  fields = {f.name for f in dataclasses.fields(cls)} - {"vocab_size"}
  return cls(vocab_size=vocab_size, **{k: v for k, v in model_cfg.items() if k in fields})
