"""The family registry: `config.model.name` -> a builder `(config, vocab) -> models.family.Family`, and the config
schema of each family (the keys it reads and the allowed values of the enumerated ones).

It sits above models/, decode/ and data/; train/ reaches it only through the registry `configs` installs. Adding
a family is adding a file here that calls `register` (models/README.md), as a test or notebook may.

The config is checked against the chosen family before anything is built: every key present in a family-owned
section (`model`, `objective`, `decode`, and the keys in FAMILY_KEYS) must be one the family reads, so a config
or an override never holds a key that silently does nothing, and each enumerated value must be one of its choices.
"""
import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Mapping

from data.vocab import Vocabulary
from models.family import Family, HfInterop

# Sections that belong to the family as a whole, and keys elsewhere that only some families read.
FAMILY_SECTIONS = ("model", "objective", "decode")
FAMILY_KEYS = ("data.task", "data.num_classes", "eval.mask_rate", "eval.analyses", "eval.analyses_every",
               "eval.num_keys", "eval.num_sequences")


@dataclasses.dataclass(frozen=True)
class Registration:
  name: str
  build: Callable[[Any, Vocabulary], Family]
  keys: Mapping[str, tuple | None]     # dotted key -> allowed values (None: any)
  hf: HfInterop | None = None          # Hugging Face import/export (launch.py --mode=import_hf|export_hf)
  check: Callable[[Any], None] | None = None   # cheap checks of trainer-level keys, before the vocabulary is built
  smoke: str | None = None             # a config that trains in seconds, as launch.py's --config takes it


_REGISTRY: dict[str, Registration] = {}
_discovered = False


def register(name: str, keys: Mapping[str, tuple | None], hf: HfInterop | None = None,
             check: Callable[[Any], None] | None = None, smoke: str | None = None):
  """Decorator: registers `build(config, vocab) -> Family` under `name` with the config keys it reads (and an
  optional `check(config)` that raises ValueError for data settings the family cannot use, run before anything
  is built, e.g. before a SentencePiece vocabulary is trained on a corpus the family would refuse). `smoke`
  ("configs/x.py:tiny", relative to the repository) is the family's config for the conformance suite
  (tests/suites/test_conformance.py: train, exact resume, accumulation, eval, decode), which every family must pass."""
  def wrap(build):
    _REGISTRY[name] = Registration(name, build, dict(keys), hf, check, smoke)
    return build
  return wrap


def _discover() -> None:
  global _discovered
  if not _discovered:
    _discovered = True
    for m in pkgutil.iter_modules(__path__):
      importlib.import_module(f"{__name__}.{m.name}")


def registered() -> list[str]:
  _discover()
  return sorted(_REGISTRY)


def registration(name: str) -> Registration:
  _discover()
  if name not in _REGISTRY:
    raise ValueError(f"unknown model.name={name!r}; registered: {sorted(_REGISTRY)}")
  return _REGISTRY[name]


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
  if hasattr(node, "items") and not isinstance(node, (str, bytes)):
    out = {}
    for k, v in node.items():
      out.update(_leaves(v, f"{prefix}.{k}" if prefix else k))
    return out
  return {prefix: node}


def family_keys(config: Any) -> dict[str, Any]:
  """The family-owned keys present in `config`, with their values."""
  out = {}
  for section in FAMILY_SECTIONS:
    if section in config:
      out.update(_leaves(config[section], section))
  for key in FAMILY_KEYS:
    section, leaf = key.split(".")
    if section in config and leaf in config[section]:
      out[key] = config[section][leaf]
  return out


def check_config(config: Any) -> Registration:
  """Raises ValueError (one line naming the key, the family and the fix) for a family-owned key the family does
  not read, or an enumerated value outside its choices. Returns the family's registration."""
  reg = registration(config.model.name)
  present = family_keys(config)
  unused = sorted(k for k in present if k not in reg.keys)
  if unused:
    raise ValueError(f"model.name={reg.name!r} does not read {', '.join(unused)}; remove "
                     f"{'it' if len(unused) == 1 else 'them'} from the config file or the --config override")
  for key, value in present.items():
    choices = reg.keys[key]
    if choices is not None and value not in choices:
      raise ValueError(f"{key}={value!r} is not one of {list(choices)} (model.name={reg.name!r}); set "
                       f"--config.{key} to one of them")
  if reg.check is not None:
    reg.check(config)
  return reg


def build(config: Any, vocab: Vocabulary) -> Family:
  """Checks the config against the family's schema, then builds the Family (no parameters, no compilation)."""
  return check_config(config).build(config, vocab)
