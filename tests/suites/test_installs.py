"""The install files agree on one jax, and libtpu being installed (requirements-tpu.txt) costs CPU runs nothing.

The start-up test runs fresh interpreters three ways (bench/startup.py): JAX's default, which loads libtpu and
probes for a TPU (the control: it must load the plugin, or the comparison says nothing), the project's platform
choice (train/platforms.py, as launch.py and tests/conftest.py make it), and libtpu hidden (as if not installed);
the probes live in train/platforms.py.
"""
import importlib.metadata
import os
import statistics

import pytest
from packaging.requirements import Requirement

from train.platforms import STARTUP_VARIANTS as VARIANTS, clean_environment, time_startup as start_up

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pins(name: str) -> dict[str, Requirement]:
  out = {}
  for line in open(os.path.join(ROOT, name)):
    line = line.split("#", 1)[0].strip()
    if line and not line.startswith("-r"):
      req = Requirement(line)
      out[req.name] = req
  return out


def _version(req: Requirement) -> str:
  (spec,) = req.specifier
  assert spec.operator == "==", f"{req} is not pinned with =="
  return spec.version


def test_requirement_files_pin_one_jax_and_the_plugins_it_names():
  base, tpu, gpu = _pins("requirements.txt"), _pins("requirements-tpu.txt"), _pins("requirements-gpu.txt")
  jax_version = _version(base["jax"])
  assert _version(base["jaxlib"]) == jax_version
  assert _version(tpu["jax"]) == jax_version and tpu["jax"].extras == {"tpu"}
  assert _version(gpu["jax"]) == jax_version and gpu["jax"].extras == {"cuda12"}
  assert _version(gpu["jax-cuda12-plugin"]) == jax_version and _version(gpu["jax-cuda12-pjrt"]) == jax_version
  # The libtpu pin is one the pinned jax accepts (jax's own metadata for its "tpu" extra).
  assert importlib.metadata.version("jax") == jax_version
  wanted = [Requirement(r) for r in importlib.metadata.requires("jax") if 'extra == "tpu"' in r]
  (libtpu,) = [r for r in wanted if r.name == "libtpu"]
  assert libtpu.specifier.contains(_version(tpu["libtpu"])), (libtpu, tpu["libtpu"])
  for r in (r for r in importlib.metadata.requires("jax") if 'extra == "cuda12"' in r):
    req = Requirement(r)
    if req.name in gpu:
      assert req.specifier.contains(_version(gpu[req.name])), (req, gpu[req.name])


def test_cpu_startup_with_libtpu_installed_is_as_fast_as_without():
  if importlib.util.find_spec("libtpu") is None:
    pytest.fail("libtpu is not installed: install requirements-test.txt (it includes requirements-tpu.txt)")
  # A clean environment: importing jax with libtpu present sets TPU_LIBRARY_PATH (and the topology tests set
  # other TPU_* variables) in this process, which would reveal libtpu to the "without libtpu" variant.
  env = {**clean_environment(), "PYTHONPATH": ROOT}
  times = {k: [] for k in VARIANTS}
  loaded = {}
  for _ in range(3):
    for name, code in VARIANTS.items():
      seconds, loaded[name] = start_up(code, env)
      times[name].append(seconds)
  assert loaded == {"default": "tpu-plugin-loaded", "project": "tpu-plugin-not-loaded",
                    "without libtpu": "tpu-plugin-not-loaded"}, loaded
  ours, without = statistics.median(times["project"]), statistics.median(times["without libtpu"])
  assert ours - without < 1.0, times


def _includes(name: str) -> set[str]:
  return {line.split()[1] for line in open(os.path.join(ROOT, name)) if line.startswith("-r ")}


def test_the_runtime_install_is_lean_and_the_test_install_has_every_extra():
  runtime = _pins("requirements.txt")
  # Heavy or tooling packages live in extras files (README "Quick start"); TensorBoard is runtime (its README command).
  for name in ("seqio", "tensorflow", "pytest", "nbclient", "ipykernel", "jupyter", "matplotlib", "torch",
               "transformers"):
    assert name not in runtime, f"{name} belongs in an extras file, not requirements.txt"
  assert "tensorboard" in runtime
  extras = ["requirements-seqio.txt", "requirements-demos.txt", "requirements-tpu.txt", "requirements-gpu.txt"]
  for name in extras:
    assert _includes(name) == {"requirements.txt"}, name
  assert _includes("requirements-test.txt") == set(extras) - {"requirements-gpu.txt"}
  assert "seqio" in _pins("requirements-seqio.txt") and "pytest" in _pins("requirements-test.txt")


def test_the_repository_refers_to_no_file_outside_it():
  # A clone holds only the repository: docstrings, documents and notebooks cite papers and repositories instead.
  import subprocess
  files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
  pattern = "../" + "shared"   # spelled apart so this file does not match itself
  outside = [f for f in files if os.path.isfile(os.path.join(ROOT, f)) and not f.endswith((".npz", ".png"))
             and pattern in open(os.path.join(ROOT, f), errors="replace").read()]
  assert outside == []
