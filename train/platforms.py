"""Which JAX platforms a process initialises. Call `keep_cpu_startup_fast()` before anything asks JAX for devices.

With `libtpu` installed (requirements-tpu.txt, needed to compile for TPU topologies on any machine) but no TPU chip
on this host, JAX's default platform list still loads libtpu and probes for TPU metadata at the first
`jax.devices()`: 2-14 s per process, and warnings about TPU_ACCELERATOR_TYPE / TPU_WORKER_HOSTNAMES. Where the host
has no TPU chip and the user chose no platforms (JAX_PLATFORMS unset, JAX_FORCE_TPU_INIT unset), the list is set to
the platforms the host can run ("cpu", or "cuda,cpu" with the CUDA plugin and an NVIDIA device), so CPU start-up
costs what it costs without libtpu (bench/startup.py). Compiling for a TPU topology still works: it loads libtpu by
itself (jax.experimental.topologies). On a TPU VM nothing changes.
"""
import glob
import importlib.util
import os
import sys


def host_has_tpu() -> bool:
  """Whether a TPU chip sits on this host's PCI bus (JAX's own check, which reads sysfs only)."""
  from jax._src import hardware_utils
  return hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0


def chosen_platforms() -> str | None:
  """The platform list to set, or None to leave JAX's default (a TPU host, no libtpu, or the user's own choice)."""
  if os.environ.get("JAX_PLATFORMS") or "JAX_FORCE_TPU_INIT" in os.environ:
    return None
  if importlib.util.find_spec("libtpu") is None or host_has_tpu():
    return None
  gpu = importlib.util.find_spec("jax_cuda12_plugin") is not None and glob.glob("/dev/nvidia[0-9]*")
  return "cuda,cpu" if gpu else "cpu"


def keep_cpu_startup_fast() -> str | None:
  """Sets JAX's platform list where `chosen_platforms` says so (for this process and its children); returns it."""
  platforms = chosen_platforms()
  if platforms:
    os.environ["JAX_PLATFORMS"] = platforms
    if "jax" in sys.modules:   # JAX read the variable at import: tell its config too
      sys.modules["jax"].config.update("jax_platforms", platforms)
  return platforms


# Start-up probes, shared by bench/startup.py and tests/suites/test_installs.py: `import jax; jax.devices()` in a fresh
# interpreter, ending by printing whether libtpu's plugin was loaded.
HIDE_LIBTPU = ("import sys\n"
               "class _NoLibtpu:\n"
               "  def find_spec(self, name, path=None, target=None):\n"
               "    if name == 'libtpu' or name.startswith('libtpu.'):\n"
               "      raise ImportError('hidden')\n"
               "sys.meta_path.insert(0, _NoLibtpu())\n")   # as if libtpu were not installed
_PROBE = ("import jax\njax.devices()\n"
          "from jax._src.lib import xla_client\nprint('tpu-plugin-loaded' if xla_client.pjrt_plugin_loaded('tpu') "
          "else 'tpu-plugin-not-loaded')\n")
STARTUP_VARIANTS = {"default": _PROBE,
                    "project": "from train.platforms import keep_cpu_startup_fast\nkeep_cpu_startup_fast()\n" + _PROBE,
                    "without libtpu": HIDE_LIBTPU + _PROBE}


def clean_environment() -> dict:
  """This process's environment without the platform choices made here or by JAX (JAX_PLATFORMS, TPU_*: importing
  jax with libtpu present sets TPU_LIBRARY_PATH), so a probe starts as a fresh shell would."""
  return {k: v for k, v in os.environ.items()
          if not k.startswith(("JAX_PLATFORMS", "JAX_FORCE_TPU_INIT", "TPU_", "ALLOW_MULTIPLE_LIBTPU_LOAD"))}


def time_startup(code: str, env: dict | None = None) -> tuple[float, str]:
  """Seconds for a fresh interpreter to run a STARTUP_VARIANTS probe (in `env`, default `clean_environment()`), and
  what it printed last."""
  import subprocess
  import time
  env = clean_environment() if env is None else env
  t = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
  return time.perf_counter() - t, out.stdout.strip().splitlines()[-1]
