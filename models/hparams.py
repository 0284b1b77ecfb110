"""Building a family's frozen hyperparameter dataclass from the `model` section of a config, and the schema of that
section (its keys and the allowed values of the enumerated ones), which the family registry checks up front."""
import dataclasses
from typing import Any, TypeVar

import jax.numpy as jnp

from models.layers.inputs import POOLINGS
from models.layers.mlp import ACTIVATIONS
from models.layers.remat import REMAT_POLICIES

T = TypeVar("T")

DTYPES = ("float32", "bfloat16")
ATTENTION_IMPLS = ("auto", "chunked", "einsum", "xla", "cudnn", "splash")
# Allowed values of enumerated hyperparameters, by field name (shared by every family that has the field).
CHOICES: dict[str, tuple[str, ...]] = {
    "dtype": DTYPES, "attention_impl": ATTENTION_IMPLS, "activation": ACTIVATIONS, "hidden_act": ACTIVATIONS,
    "hidden_activation": ACTIVATIONS, "classifier_activation": ACTIVATIONS, "pooling": POOLINGS,
    "style": ("gpt2", "modern"), "backbone": ("classic", "modernbert"),
    "electra_tower": ("discriminator", "generator"), "remat": REMAT_POLICIES,
}
# Keys of the `model` section every family reads (the embedding size is derived from the vocabulary with them).
SHARED_MODEL_KEYS = ("name", "vocab_size", "vocab_multiple")
# How a model computes or trains, not what it is: an import or a fine-tune keeps the command line's values.
RUNTIME_MODEL_KEYS = ("name", "vocab_multiple", "dtype", "attention_impl", "remat", "dropout_rate",
                      "initializer_range")


def check_positive(hparams: Any, *names: str) -> None:
  """Refuses zero or negative sizes (they would fail deep inside a layer, or divide by zero) with the key to set."""
  for n in names:
    value = getattr(hparams, n)
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"model.{n}={value!r} must be a positive integer; set --config.model.{n}")


def check_attention(attention_impl: str, dtype: str) -> None:
  """cuDNN's fused attention takes 16-bit inputs only: refuse it in float32 rather than fail inside the kernel."""
  if attention_impl == "cudnn" and dtype == "float32":
    raise ValueError("model.attention_impl='cudnn' needs 16-bit inputs; set --config.model.dtype=bfloat16 or "
                     "choose model.attention_impl='xla' (or 'auto')")


class TransformerHparams:
  """The base of every transformer family's frozen hyperparameter dataclass (fields hidden_size, num_heads, dtype,
  optionally attention_impl): the head width, the compute dtype and the checks they share. A subclass calls
  `self.check_transformer(*positive_fields)` first in its __post_init__."""

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def compute_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

  def check_transformer(self, *positive: str) -> None:
    check_positive(self, "hidden_size", "num_heads", *positive)
    if hasattr(self, "attention_impl"):
      check_attention(self.attention_impl, self.dtype)
    if self.hidden_size % self.num_heads:
      raise ValueError(f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads={self.num_heads}")


def model_keys(cls: type, *extra: str, exclude: tuple[str, ...] = ()) -> dict[str, tuple[str, ...] | None]:
  """The `model.*` keys a family reads: the fields of its hyperparameter dataclass (minus `exclude`, and minus
  vocab_size, which comes from the vocabulary) plus `extra` (builder-level keys such as pooling), each mapped to
  its allowed values (None: any value)."""
  fields = [f.name for f in dataclasses.fields(cls) if f.name not in exclude and f.name != "vocab_size"]
  return {f"model.{k}": CHOICES.get(k) for k in (*SHARED_MODEL_KEYS, *fields, *extra)}


def from_model_config(cls: type[T], model_cfg: Any, vocab_size: int) -> T:
  """`cls` from the config keys that are its fields (the registry has already refused keys the family does not
  read; builder-level keys such as `model.pooling` are read by the builder itself)."""
  fields = {f.name for f in dataclasses.fields(cls)} - {"vocab_size"}
  return cls(vocab_size=vocab_size, **{k: v for k, v in model_cfg.items() if k in fields})
