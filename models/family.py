"""The family interface: everything a model family hands the trainer, evaluator, decoder, checkpointer and benchmarks.

A family is a frozen `Family` value built from the config (and the vocabulary) by a builder registered in
`configs/families/`. `train/` uses only this module's types: it never names a family, a batch key or a model method.

  Family.module          the Flax module (its parameters are the train state's `params`)
  Family.objective       an `Objective`: prepare(batch, rng, *, step) -> batch, loss(apply_fn, params, batch, rng)
                         -> (loss, additive metrics), finalize_metrics(metrics) -> metrics (identity by default)
  Family.eval_objective  the objective evaluation uses (a lower mask rate, dropout off); default: `objective`
  Family.hparams         the family's frozen hyperparameter dataclass
  Family.batch_spec      name -> BatchField(shape without batch, dtype, logical axes): the trainer derives init
                         inputs, the compiled step's ShapeDtypeStructs and the batch shardings from it
  Family.data            a `DataSource` (data/sources.py: documents, labelled task, synthetic generator; a rollout
                         family draws its samples with the current parameters inside `Objective.loss`)
  Family.flops_per_token training FLOPs per token at `tokens_per_example` tokens per example (for MFU)
  Family.decode          (params, prompts, mesh) -> texts: what `--mode=decode` and the end-of-training samples show
                         (one per prompt, then optional notes such as a file written)
  Family.prompts         the prompts decoded when none are given
  Family.compat          values stored in every checkpoint that a restore must match (e.g. the embedding rows)
  Family.evals           the family's own evaluations beyond the mean metrics (curves, probes; e.g. per-position
                         NLL), declared like big_vision's evaluators: `Evaluation(name, fn, every)`, run by the
                         training loop (each at its `every` and at the last step), by `--mode=eval` and by the
                         follower alike, and written to workdir/analysis.jsonl
  Family.frozen          path -> bool: parameters the optimiser never moves (a zero update after AdamW, so no
                         weight decay either; the objective also stops their gradient), e.g. a frozen base model
                         under a trained adapter
  Family.base            a family that trains on top of another run (ADJUST on an MDLM) says what that run is; the
                         trainer then refuses to start without checkpoint.init_from (one line naming `base`)

Initialisation runs the objective's own forward pass on zeros of the batch spec (`init_variables`), so a module
needs no init-only call signature: whatever the loss calls (methods included) is what gets initialised.
Legend: B batch.
"""
import dataclasses
import functools
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class BatchField:
  """One batch entry: `shape` and `axes` (logical axis names, None = replicated) exclude the leading batch axis."""
  shape: tuple[int, ...]
  dtype: Any
  axes: tuple[str | None, ...]

  def __post_init__(self):
    object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
    object.__setattr__(self, "axes", tuple(self.axes))
    object.__setattr__(self, "dtype", np.dtype(self.dtype))
    if len(self.shape) != len(self.axes):
      raise ValueError(f"BatchField shape {self.shape} and axes {self.axes} differ in rank")


BatchSpec = Mapping[str, BatchField]


def token_batch_spec(seq_len: int, *, labels: bool = False) -> dict[str, BatchField]:
  """The packed language-model batch {tokens, segment_ids, positions} [B, T] int32 (+ per-example `labels`)."""
  spec = {k: BatchField((seq_len,), np.int32, ("length",)) for k in ("tokens", "segment_ids", "positions")}
  if labels:
    spec["labels"] = BatchField((), np.int32, ())
  return spec


def zeros_batch(spec: BatchSpec, batch: int) -> dict[str, jax.Array]:
  return {k: jnp.zeros((batch, *f.shape), f.dtype) for k, f in spec.items()}


def check_batch(spec: BatchSpec, batch: Mapping[str, np.ndarray], source: str) -> None:
  """Raises ValueError (one line) if a host batch's keys, per-example shapes or dtypes differ from the spec."""
  if set(batch) != set(spec):
    raise ValueError(f"{source} yields keys {sorted(batch)} but the family's batch_spec declares {sorted(spec)}")
  for k, f in spec.items():
    v = batch[k]
    if tuple(v.shape[1:]) != f.shape or np.dtype(v.dtype) != f.dtype:
      raise ValueError(f"{source} yields {k} of shape {tuple(v.shape)} {np.dtype(v.dtype)} but the family's "
                       f"batch_spec declares (B, {', '.join(map(str, f.shape))}) {f.dtype}")


class Objective:
  """Base class of training and evaluation objectives.

  `prepare` runs once per step on the whole global batch (masking, weights normalised over the batch), before
  the batch is split into gradient-accumulation micro-batches; `loss` runs per micro-batch and returns
  (loss, metrics) whose values add up over micro-batches (weights pre-normalised, see models/losses.py) and
  include `num_targets` (evaluation weighs batches by it); `finalize_metrics` forms ratios of those sums once per
  step. Noise the objective draws (masks, samples, a posterior's noise) is drawn in `prepare` for the whole batch,
  so gradient accumulation over micro-batches equals one large batch exactly (tests/suites/test_conformance.py);
  `loss`'s own rng is folded per micro-batch and serves what cannot be drawn ahead (dropout masks inside the module,
  rollouts that need the parameters). `step` is the int32 number of updates applied so far (a curriculum may
  read it); the trainer always passes it, and None (direct calls, tests) means the end of any curriculum. `loss` is also traced inside `module.init`
  (`init_variables`) with params None: there it must create every parameter outside `lax.cond` / `lax.switch`
  branches (Flax cannot create variables in them), e.g. by taking one branch directly.
  """

  def prepare(self, batch: dict[str, jax.Array], rng: jax.Array, *,
              step: jax.Array | None = None) -> dict[str, jax.Array]:
    del rng, step
    return batch

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch: dict[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    raise NotImplementedError

  def finalize_metrics(self, metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return metrics


class DataSource(Protocol):
  """Host-side batches as dicts of NumPy arrays matching the family's batch_spec, this process's rows only.

  Train iterators repeat forever and are checkpointable: `portable_state()` / `set_portable_state(read)` (records
  keyed by name, each stored by one process and readable on any process count: data/pipeline.py) or, restorable
  on the same process count only, `get_state`/`set_state` (grain's protocol). Evaluation iterators yield the same
  batches every time they are created with the same seed.
  """

  def train_iterator(self, *, global_batch: int, seed: int) -> Iterator[dict[str, np.ndarray]]: ...

  def eval_iterator(self, *, global_batch: int, seed: int) -> Iterator[dict[str, np.ndarray]]: ...


@dataclasses.dataclass(frozen=True)
class HfInterop:
  """Hugging Face conversion hooks of a family (registered with it; no vocabulary or Family needed).

  load(paths) -> (params, compat, hparams): weights of one or more Hugging Face directories, in this family's
  layout, the `compat` values of the model they describe, and its hyperparameter dataclass (read from their
  config.json; its fields are the family's `model.*` keys); save(config, compat, params, path): writes a directory that
  `transformers` loads, from a run's stored config and its checkpoint's compat values.
  framing: how the family frames one text ("cls", "$A", "sep" in order), which the exported tokenizer's
  post-processor repeats so a pipeline's input is the rows the model saw.
  """
  load: Callable[[Sequence[str]], tuple[Any, dict, Any]] | None = None
  save: Callable[[Any, Mapping[str, Any], Any, str], None] | None = None
  framing: tuple[str, ...] = ("cls", "$A", "sep")


DecodeFn = Callable[[Any, Sequence[str], "jax.sharding.Mesh | None"], list[str]]   # (params, prompts, mesh)


@dataclasses.dataclass(frozen=True)
class ModuleFn:
  """`module.<attr>` (apply by default, with an optional `method=`) as a value: equal, and hashing alike, for equal
  modules. Python compares bound methods by the identity of their object, so a program jitted per apply function
  (decode/'s cached programs and static arguments) would be traced again for every build of the same model, e.g.
  each `--mode=decode` call in a notebook; this stands in for `module.apply` there (`as_value`)."""
  module: nn.Module
  attr: str = "apply"
  method: str | None = None

  def __call__(self, *args, **kwargs):
    if self.method is not None:
      kwargs.setdefault("method", self.method)
    return getattr(self.module, self.attr)(*args, **kwargs)


def as_value(fn: Callable) -> Callable:
  """A bound method of a Flax module as a `ModuleFn`; any other callable unchanged."""
  owner = getattr(fn, "__self__", None)
  return ModuleFn(owner, fn.__name__) if isinstance(owner, nn.Module) else fn


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """One of a family's own evaluations: `fn(params) -> JSON-able dict`, due every `every` training steps (0: only
  at the last step) and at every `--mode=eval` / follower evaluation."""
  name: str
  fn: Callable[[Any], dict]
  every: int = 0


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  module: nn.Module
  objective: Objective
  hparams: Any
  batch_spec: BatchSpec
  data: DataSource
  flops_per_token: Callable[[int], float]
  tokens_per_example: int
  eval_objective: Objective | None = None
  decode: DecodeFn | None = None
  prompts: tuple[str, ...] = ()        # what `decode` shows when no text is given (config.decode.prompts)
  compat: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  frozen: Callable[[tuple[str, ...]], bool] | None = None
  base: str = ""   # what a run starts from, if it needs a checkpoint (loaded by checkpoint.init_from); "": nothing
  evals: tuple["Evaluation", ...] = ()
  baseline: Callable[[], dict[str, float]] | None = None   # eval metric -> what predicting without context scores

  def __post_init__(self):
    if not isinstance(self.objective, Objective) or not isinstance(self.evaluation, Objective):
      raise TypeError(f"family {self.name!r}: objectives must subclass models.family.Objective")

  @property
  def evaluation(self) -> Objective:
    return self.eval_objective or self.objective

  def init_variables(self, rng: jax.Array) -> dict:
    return init_variables(self.module, self.objective, self.batch_spec, rng)


def _bound_apply(module: nn.Module) -> Callable[..., Any]:
  """An `apply_fn` stand-in for use inside `module.init`: calls the bound module (or a method of it)."""
  def apply_fn(variables, *args, method=None, rngs=None, **kwargs):
    del variables, rngs
    if method is None:
      return module(*args, **kwargs)
    fn = getattr(module, method) if isinstance(method, str) else functools.partial(method, module)
    return fn(*args, **kwargs)
  return apply_fn


def init_variables(module: nn.Module, objective: Objective, batch_spec: BatchSpec, rng: jax.Array) -> dict:
  """Variables (boxed with logical axes) created by running `objective`'s forward pass on a zero batch of one row.

  The `params` stream is `rng` itself, so parameter values do not depend on the objective's use of randomness.
  """
  batch = objective.prepare(zeros_batch(batch_spec, 1), jax.random.fold_in(rng, 1), step=jnp.zeros((), jnp.int32))

  def forward(mdl, batch, loss_rng):
    return objective.loss(_bound_apply(mdl), None, batch, loss_rng)

  return module.init({"params": rng, "dropout": jax.random.fold_in(rng, 2)}, batch, jax.random.fold_in(rng, 3),
                     method=forward)


class FamilyRegistry(Protocol):
  """What the trainer needs of a family registry (configs/families/ is the one the project installs):
  check_config(config) -> registration (ValueError for a key the family does not read); build(config, vocab) ->
  Family; registration(name) -> an object with `.name` and `.hf` (HfInterop or None); base_config() -> the
  ConfigDict of defaults every experiment starts from (resume compares against it)."""

  def check_config(self, config: Any) -> Any: ...
  def build(self, config: Any, vocab: Any) -> Family: ...
  def registration(self, name: str) -> Any: ...
  def base_config(self) -> Any: ...


_installed: FamilyRegistry | None = None


def install_registry(registry: FamilyRegistry) -> None:
  """Makes `registry` the one the trainer looks families up in (launch.py, the composition root, installs
  configs.REGISTRY; importing configs installs it too, so notebooks, benches and tests need no call)."""
  global _installed
  _installed = registry


def family_registry() -> FamilyRegistry:
  if _installed is None:
    raise RuntimeError("no family registry is installed: import configs (it installs configs/families/) or call "
                       "models.family.install_registry")
  return _installed
