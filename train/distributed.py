"""Multi-process start-up (jax.distributed) and the start-up banner."""
import os

import jax
from absl import logging

from train.errors import ConfigError


def maybe_initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
                     auto: bool = False, timeout_s: int = 300) -> bool:
  """Starts jax.distributed when flags or the environment ask for more than one process.

  Explicit: coordinator address + process count + process id (flags, or LMKIT_COORDINATOR_ADDRESS,
  LMKIT_NUM_PROCESSES, LMKIT_PROCESS_ID). `auto` (on Cloud TPU pods and SLURM/Open MPI GPU clusters) lets JAX
  detect everything. Every process must run the same command; a missing process makes the others fail after
  `timeout_s` instead of hanging.
  """
  coordinator_address = coordinator_address or os.environ.get("LMKIT_COORDINATOR_ADDRESS", "")
  num_processes = num_processes or int(os.environ.get("LMKIT_NUM_PROCESSES", "0"))
  if process_id < 0:
    process_id = int(os.environ.get("LMKIT_PROCESS_ID", "-1"))
  given = {"--coordinator_address": bool(coordinator_address), "--num_processes": num_processes > 0,
           "--process_id": process_id >= 0}
  if any(given.values()) and not all(given.values()):
    missing = [k for k, v in given.items() if not v]
    raise ConfigError(f"a multi-process start needs {', '.join(missing)} as well (or LMKIT_COORDINATOR_ADDRESS, "
                      "LMKIT_NUM_PROCESSES, LMKIT_PROCESS_ID); give all three on every process, or --distributed")
  if coordinator_address and num_processes > 1:
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=timeout_s)
    return True
  if auto:
    jax.distributed.initialize(initialization_timeout=timeout_s)
    return True
  return False


def banner() -> str:
  devices = jax.devices()
  return (f"process {jax.process_index()}/{jax.process_count()} | {jax.local_device_count()} local / "
          f"{len(devices)} global devices | platform {devices[0].platform} ({devices[0].device_kind}) | "
          f"jax {jax.__version__}")


def log_banner() -> None:
  logging.info("%s", banner())
  print(banner(), flush=True)
