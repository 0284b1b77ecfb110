"""Cloud TPU topologies for compiling on a machine without them (`launch.py --mode=compile_only
--compile_topology=NAME`), and the chips' figures the report measures against.

NAME is a Cloud TPU accelerator type (`v4-8`, `v5p-16`, `v5litepod-16`, `v5e-16`, `v6e-64`: cores for v4/v5p, chips
for v5e/v6e) or a topology name libtpu accepts (`v5p:2x2x2`, `v5e:4x4`, `v6e:8x8`). libtpu takes only the latter, so
accelerator types are mapped to shapes here (the default slice shapes of the Cloud TPU pages below). The devices
come from `jax.experimental.topologies`: the real TPU compiler (XLA:TPU in libtpu) compiles for them; nothing runs.
"""
import dataclasses
import importlib.util
import math
import os
import re

from train.errors import ConfigError

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU chip's figures (per chip; a v4 chip shows as two devices, one per TensorCore, in compile-only
  topologies). Sources: the Cloud TPU system-architecture pages, cloud.google.com/tpu/docs/{v4,v5e,v5p,v6e}."""
  name: str
  hbm_bytes: float
  peak_bf16_flops: float        # dense bf16 FLOP/s
  hbm_bytes_per_s: float


CHIPS = {   # by jax Device.device_kind
    "TPU v4": Chip("v4", 32 * GIB, 275e12, 1200e9),
    "TPU v5 lite": Chip("v5e", 16 * GIB, 197e12, 819e9),
    "TPU v5": Chip("v5p", 95 * GIB, 459e12, 2765e9),
    "TPU v6 lite": Chip("v6e", 32 * GIB, 918e12, 1640e9),
}

# Accelerator-type prefix -> (libtpu generation, how many of the type's number make a chip, 3-D or 2-D torus).
GENERATIONS = {"v4": ("v4", 2, 3), "v5p": ("v5p", 2, 3), "v5litepod": ("v5e", 1, 2), "v5e": ("v5e", 1, 2),
               "v6e": ("v6e", 1, 2)}
# Default slice shapes by chip count (Cloud TPU pages: v4/v5p 3-D tori, v5e/v6e 2-D).
SHAPES = {3: {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 256: "4x8x8",
              512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16", 6144: "16x16x24"},
          2: {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}}
_TOPOLOGY = re.compile(r"^(v4|v5p|v5e|v6e):(\d+(?:x\d+){1,2})$")
_ACCELERATOR = re.compile(r"^(v4|v5p|v5litepod|v5e|v6e)-(\d+)$")


def topology_name(name: str) -> str:
  """An accelerator type or topology name -> the topology name libtpu takes ("v5p-16" -> "v5p:2x2x2")."""
  if _TOPOLOGY.match(name):
    return name
  m = _ACCELERATOR.match(name)
  if m:
    generation, per_chip, dims = GENERATIONS[m.group(1)]
    count = int(m.group(2))
    chips = count // per_chip
    if count % per_chip == 0 and chips in SHAPES[dims]:
      return f"{generation}:{SHAPES[dims][chips]}"
    sizes = ", ".join(f"{m.group(1)}-{c * per_chip}" for c in SHAPES[dims])
    raise ConfigError(f"--compile_topology={name}: no default {m.group(1)} slice of {count}; use one of {sizes}, or "
                      f"a topology name such as {generation}:{SHAPES[dims][4 if dims == 3 else 16]}")
  raise ConfigError(f"--compile_topology={name!r}: use a Cloud TPU accelerator type (v4-8, v5p-16, v5litepod-16, "
                    "v6e-64) or a topology name (v5p:2x2x2, v5e:4x4, v6e:8x8)")


def accelerator_type(topo_name: str) -> str:
  """A topology name -> its Cloud TPU accelerator type ("v5p:2x2x2" -> "v5p-16", "v5e:4x4" -> "v5litepod-16")."""
  generation, shape = topo_name.split(":")
  chips = math.prod(int(s) for s in shape.split("x"))
  prefix, per_chip, _ = next((p, n, d) for p, (g, n, d) in GENERATIONS.items() if g == generation)
  return f"{prefix}-{chips * per_chip}"


def topology_devices(name: str, num_slices: int = 1) -> list:
  """The compile-only TPU devices of NAME (x num_slices slices joined over the data-centre network)."""
  if num_slices < 1:
    raise ConfigError(f"--compile_topology_num_slices={num_slices} must be >= 1")
  if importlib.util.find_spec("libtpu") is None:
    raise ConfigError("--compile_topology needs the TPU compiler (libtpu): pip install -r requirements-tpu.txt")
  topo_name = topology_name(name)
  from jax.experimental import topologies
  # libtpu reads these when it loads (here, the first time): its start-up looks for the TPU VM it runs on and
  # prints warnings when there is none, so tell it the slice; compile-only use touches no chip, so more than one
  # process may load it (its lock file is for chips). Restored afterwards: child processes must not inherit them.
  settings = {"TPU_SKIP_MDS_QUERY": "1", "TPU_WORKER_HOSTNAMES": "localhost",
              "TPU_ACCELERATOR_TYPE": accelerator_type(topo_name), "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
  saved = {k: os.environ.get(k) for k in settings}
  os.environ.update({k: v for k, v in settings.items() if saved[k] is None})
  try:
    topo = topologies.get_topology_desc(topology_name=topo_name, platform="tpu",
                                        **({"num_slices": num_slices} if num_slices > 1 else {}))
  except Exception as e:  # noqa: BLE001 - libtpu's own message, as one line
    raise ConfigError(f"--compile_topology={name} ({topo_name}): libtpu refused it: {' '.join(str(e).split())[:200]}")
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
  return list(topo.devices)


def chip_of(devices) -> tuple[Chip | None, int]:
  """(the chip's figures or None for a kind not in CHIPS, devices per chip) for a list of devices."""
  chip = CHIPS.get(devices[0].device_kind)
  if chip is None or not hasattr(devices[0], "coords"):
    return chip, 1
  chips = {(getattr(d, "slice_index", 0), tuple(d.coords)) for d in devices}
  return chip, max(1, len(devices) // len(chips))
