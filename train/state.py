"""TrainState and its sharded initialisation from logical partitioning annotations."""
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from models.family import Family
from train.mesh import tree_shardings


@flax.struct.dataclass
class TrainState:
  step: jax.Array      # int32 scalar: number of updates applied
  params: Any
  opt_state: Any
  rng: jax.Array       # base key; step keys are fold_in(rng, step)


def make_init_fn(family: Family, tx: optax.GradientTransformation):
  """rng -> TrainState; the parameters come from the family's objective forward pass on a zero batch."""
  def init(rng: jax.Array) -> TrainState:
    params_rng, state_rng = jax.random.split(rng)
    params = nn.unbox(family.init_variables(params_rng)["params"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=state_rng)
  return init


# An abstract raw key: eval_shape needs no concrete one, and a concrete key would be placed on the current mesh's
# devices, which do not exist when the mesh is a TPU topology compiled for on another machine (--compile_topology).
ABSTRACT_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def param_logical_specs(family: Family) -> Any:
  """Tree of PartitionSpecs with logical axis names, read from the modules' annotations (no FLOPs, no memory)."""
  boxed = jax.eval_shape(lambda r: family.init_variables(r)["params"], ABSTRACT_KEY)
  return nn.get_partition_spec(boxed)


def state_shardings(family: Family, tx: optax.GradientTransformation, mesh: Mesh,
                    rules: Sequence) -> tuple[TrainState, TrainState]:
  """(abstract state with shardings attached, tree of NamedShardings) for the whole TrainState.

  Optimiser moments follow their parameters' shardings (optax.tree_map_params); counters are replicated.
  """
  params_sh = tree_shardings(mesh, param_logical_specs(family), rules)
  abstract = jax.eval_shape(make_init_fn(family, tx), ABSTRACT_KEY)
  replicated = NamedSharding(mesh, P())
  opt_sh = optax.tree_utils.tree_map_params(tx, lambda _, s: s, abstract.opt_state, params_sh,
                                            transform_non_params=lambda _: replicated,
                                            is_leaf=lambda x: isinstance(x, NamedSharding))
  shardings = TrainState(step=replicated, params=params_sh, opt_state=opt_sh, rng=replicated)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return abstract, shardings
