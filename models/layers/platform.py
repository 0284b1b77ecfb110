"""The platform a computation is being built for, which is not always this process's: a step compiled for a TPU
topology on a CPU machine (launch.py --compile_topology) is traced under a mesh of TPU devices."""
import jax


def platform() -> str:
  """The current mesh's device platform where a mesh is set (inside jit too), else JAX's default backend."""
  device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
  return device.platform if device is not None else jax.default_backend()
