"""Tests see 8 simulated CPU devices (set before anything imports jax) and compile with LLVM at -O2 instead of -O3
(`--xla_backend_optimization_level=2`: the same HLO, optimised by XLA as usual; on 2 cores the electra, sharding
and adjust test files took 186 s against 236 s at -O3, and 176 s at -O0, whose unvectorised code made the watermark
tests 2.4x slower). They share one persistent compilation cache per session: the suite compiles the same tiny
programs in many tests and launch.py subprocesses (which inherit the variable), and an identical program then
compiles once. A cache directory given in JAX_COMPILATION_CACHE_DIR is used as is; otherwise a fresh one is made
and removed at exit, so no run reads another run's cache."""
import atexit
import os
import shutil
import sys
import tempfile

if "jax" not in sys.modules:
  os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=2")
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="lmkit_test_jax_cache_")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from train.platforms import keep_cpu_startup_fast  # noqa: E402

keep_cpu_startup_fast()   # libtpu is installed for the TPU-compiler tests: CPU start-up must not probe for a TPU

from absl import flags, logging  # noqa: E402

flags.FLAGS.mark_as_parsed()  # grain multiprocessing reads absl flags (google/grain#1355)
logging.set_verbosity(logging.WARNING)


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: longer than the CI budget allows; run with -m slow")

