"""Device mesh with axes ('data', 'fsdp', 'tensor') and logical-name shardings."""
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from train.errors import ConfigError

AXES = ("data", "fsdp", "tensor")


def mesh_shape(mesh_cfg: Any, num_devices: int) -> tuple[int, int, int]:
  sizes = [int(mesh_cfg[a]) for a in AXES]
  if sizes.count(-1) > 1:
    raise ConfigError(f"mesh {dict(zip(AXES, sizes))}: at most one axis may be -1")
  known = int(np.prod([s for s in sizes if s != -1]))
  if any(s == 0 or s < -1 for s in sizes) or num_devices % known:
    raise ConfigError(f"mesh {dict(zip(AXES, sizes))} does not divide the {num_devices} devices; set "
                      f"--config.mesh.data/fsdp/tensor so that their product is {num_devices} (one may be -1)")
  sizes = [num_devices // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != num_devices:
    raise ConfigError(f"mesh {dict(zip(AXES, sizes))} uses {int(np.prod(sizes))} devices but {num_devices} are "
                      f"available; set one axis to -1 (e.g. --config.mesh.data=-1)")
  return tuple(sizes)  # type: ignore[return-value]


def make_mesh(mesh_cfg: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The ('data', 'fsdp', 'tensor') mesh over `devices`. Devices of several TPU slices (multi-slice): the data axis
  spans the slices (its gradient all-reduce is the only traffic over the data-centre network), fsdp and tensor
  stay inside a slice."""
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(mesh_cfg, len(devices))
  slices = len({getattr(d, "slice_index", 0) for d in devices})
  if slices > 1:
    if shape[0] % slices:
      raise ConfigError(f"mesh {dict(zip(AXES, shape))} over {slices} slices: mesh.data must be a multiple of the "
                        f"slice count; set --config.mesh.data to a multiple of {slices} (or -1)")
    grid = mesh_utils.create_hybrid_device_mesh((shape[0] // slices, *shape[1:]), (slices, 1, 1), devices)
    return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * len(AXES))
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def data_parallel_size(mesh: Mesh) -> int:
  return mesh.shape["data"] * mesh.shape["fsdp"]


def logical_sharding(mesh: Mesh, rules: Sequence, *logical: str | None) -> NamedSharding:
  """NamedSharding for an array whose axes have the given logical names."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(logical, rules))


def tree_shardings(mesh: Mesh, logical_specs: Any, rules: Sequence) -> Any:
  """Tree of logical PartitionSpecs -> tree of NamedShardings."""
  mesh_specs = nn.logical_to_mesh(logical_specs, rules)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), mesh_specs, is_leaf=lambda x: isinstance(x, P))
