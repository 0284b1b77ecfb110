"""Compiling for Cloud TPU slices on this CPU machine with the real TPU compiler (libtpu, requirements-tpu.txt):
`launch.py --mode=compile_only --compile_topology=...` (train/aot.py, train/topology.py)."""
import importlib.util
import json
import re

import numpy as np
import pytest

from tests.helpers import run_launch
from train.errors import ConfigError
from train.topology import GIB, accelerator_type, topology_name

NOISE = ("WARNING", "E0000", "Source Location", "learning/", "Failed to find host bounds")


def _config(module: str, **overrides):
  import importlib
  c = importlib.import_module(f"configs.{module}").get_config()
  c.unlock()
  for key, value in overrides.items():
    section, leaf = key.split(".")
    c[section][leaf] = value
  c.lock()
  return c


def _param_count(report_config) -> int:
  from data.sources import sizing_vocabulary
  from train.experiment import build_experiment
  exp = build_experiment(report_config, vocab=sizing_vocabulary(report_config.data))
  return sum(int(np.prod(x.shape)) for x in __import__("jax").tree.leaves(exp.abstract_state.params))


@pytest.fixture(scope="module")
def reports():
  """The default job's config and the causal LM's train steps, compiled for v5e:2x2 (data-parallel) and
  v5p:2x2x1 (FSDP); the command test below compiles an eval step too."""
  from data.sources import sizing_vocabulary
  from train.aot import compile_report
  from train.experiment import build_experiment
  from train.topology import topology_devices

  def report(config, topology):
    exp = build_experiment(config, devices=topology_devices(topology), vocab=sizing_vocabulary(config.data))
    return compile_report(exp, topology=topology, with_eval=False)
  out = {}
  for module in ("modernbert_mlm", "causal_lm"):
    out[module, "v5e:2x2"] = report(_config(module, **{"mesh.data": 4}), "v5e:2x2")
    out[module, "v5p:2x2x1"] = report(_config(module, **{"mesh.data": 1, "mesh.fsdp": 4}), "v5p:2x2x1")
  return out


@pytest.mark.parametrize("module", ["modernbert_mlm", "causal_lm"])
def test_two_families_compile_for_two_tpu_generations_with_per_chip_memory(reports, module):
  v5e, v5p = reports[module, "v5e:2x2"], reports[module, "v5p:2x2x1"]
  assert (v5e["device_kind"], v5e["num_devices"], v5e["capacity_bytes"]) == ("TPU v5 lite", 4, 16 * GIB)
  assert (v5p["device_kind"], v5p["num_devices"], v5p["capacity_bytes"]) == ("TPU v5", 4, 95 * GIB)
  state_bytes = 3 * 4 * _param_count(_config(module))   # float32 parameters and AdamW's two moments
  for r in (v5e, v5p):
    assert r["fits"] is True and 0 < r["total_bytes"] < r["capacity_bytes"]
    assert r["train_step"]["temp_bytes"] > 0 and r["train_step"]["argument_bytes"] > 0
    # The compiler's FLOPs are the same order as our FLOP model's; the roofline bound is a positive time.
    assert 0.5 < r["flops_per_step"] / r["model_flops_per_step"] < 4
    assert r["roofline_step_s"] > 0 and 0 < r["mfu_bound"] <= 1
  # Data-parallel: every chip holds the whole state; FSDP over 4 chips: a quarter of it, plus the small replicated
  # parameters (norm scales, biases) and the batch.
  assert v5e["train_step"]["argument_bytes"] >= state_bytes
  assert state_bytes / 4 < v5p["train_step"]["argument_bytes"] < 0.4 * state_bytes


def test_compile_topology_command_prints_the_report_and_refuses_a_step_that_does_not_fit(tmp_path):
  r = run_launch(str(tmp_path), "--mode=compile_only", "--compile_topology=v5litepod-4", "--config.mesh.data=4",
                 config="configs/test_tiny.py", timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  lines = r.stdout.strip().splitlines()
  report = json.loads(lines[-1])
  for key in ("device_kind", "num_devices", "total_bytes", "capacity_bytes", "fits", "flops_per_step",
              "model_flops_per_step", "roofline_step_s"):
    assert key in report
  assert report["device_kind"] == "TPU v5 lite" and report["fits"] is True
  assert any(line.startswith("4 x TPU v5 lite devices (v5litepod-4)") for line in lines)
  assert any(line.startswith("verdict: fits") for line in lines)
  # 128 x 8,192 tokens with dense attention: the score matrices alone exceed a v5e chip's 16 GiB, and the TPU
  # compiler itself refuses the program.
  r = run_launch(str(tmp_path), "--mode=compile_only", "--compile_topology=v5e:2x2", "--config.mesh.data=4",
                 "--config.data.seq_len=8192", "--config.train.batch_size=128", "--config.model.attention_impl=einsum",
                 config="configs/test_tiny.py", timeout=600)
  assert r.returncode == 2
  errors = [line for line in r.stderr.splitlines() if not line.startswith(NOISE) and line.strip()]
  assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert re.match(r"error: the step does not fit: the compiler needs HLO temporaries of [\d.]+GB per device, more "
                  r"than the 15.75GB a TPU v5 lite device has available; lower --config.train.batch_size .*"
                  r"--config.model.remat, or shard the state with --config.mesh.fsdp", errors[0]), errors[0]


def test_accelerator_types_map_to_topologies():
  assert [topology_name(n) for n in ("v4-8", "v5p-16", "v5p-64", "v5litepod-16", "v5e-4", "v6e-64", "v5e:4x4")] \
      == ["v4:2x2x1", "v5p:2x2x2", "v5p:2x4x4", "v5e:4x4", "v5e:2x2", "v6e:8x8", "v5e:4x4"]
  assert [accelerator_type(n) for n in ("v5p:2x2x2", "v5e:4x4", "v6e:8x8", "v4:2x2x1")] \
      == ["v5p-16", "v5litepod-16", "v6e-64", "v4-8"]
  with pytest.raises(ConfigError, match=r"^--compile_topology=v5p-12: no default v5p slice of 12; use one of "):
    topology_name("v5p-12")
  with pytest.raises(ConfigError, match=r"^--compile_topology='tpu7': use a Cloud TPU accelerator type"):
    topology_name("tpu7")


def test_compile_topology_without_libtpu_names_the_requirements_file(monkeypatch):
  from train import topology
  real = importlib.util.find_spec
  monkeypatch.setattr(topology.importlib.util, "find_spec", lambda name, *a: None if name == "libtpu" else
                      real(name, *a))
  with pytest.raises(ConfigError, match=r"^--compile_topology needs the TPU compiler \(libtpu\): pip install -r "
                                        r"requirements-tpu\.txt$"):
    topology.topology_devices("v5e:2x2")


def test_multi_slice_mesh_puts_the_data_axis_across_slices():
  from train.mesh import make_mesh
  from train.topology import topology_devices
  devices = topology_devices("v5e:2x2", num_slices=2)
  assert len(devices) == 8 and {d.slice_index for d in devices} == {0, 1}
  mesh = make_mesh({"data": 2, "fsdp": 4, "tensor": 1}, devices)
  slices = np.vectorize(lambda d: d.slice_index)(mesh.devices)
  assert (slices[0] == 0).all() and (slices[1] == 1).all()   # fsdp inside a slice, data across
  with pytest.raises(ConfigError, match=r"mesh.data must be a multiple of the slice count"):
    make_mesh({"data": 1, "fsdp": 8, "tensor": 1}, devices)


@pytest.mark.slow   # three compiles of the default config's step at 512 tokens (about 75 s on 2 cores)
def test_remat_policies_trade_memory_for_recomputation_on_tpu():
  """The default config at 512 tokens in bfloat16, train step compiled for v5e:2x2: "full" keeps less than "none"
  and recomputes (more FLOPs); "dots_saveable" keeps the products, so it recomputes less than "full". (At smaller
  shapes, e.g. the tiny config, the TPU compiler's temporaries are dominated by other buffers and "full" can need
  more than "none".)"""
  import flax.linen as nn
  import jax

  from data.sources import sizing_vocabulary
  from train.aot import _analysis
  from train.experiment import build_experiment
  from train.topology import topology_devices
  out = {}
  for policy in ("none", "full", "dots_saveable"):
    c = _config("modernbert_mlm", **{"mesh.data": 4, "model.remat": policy, "data.seq_len": 512,
                                     "model.dtype": "bfloat16"})
    exp = build_experiment(c, devices=topology_devices("v5e:2x2"), vocab=sizing_vocabulary(c.data))
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
      out[policy] = _analysis(exp.compiled_train_step())
  none, full, dots = out["none"], out["full"], out["dots_saveable"]
  assert full["temp_bytes"] < 0.9 * none["temp_bytes"]
  assert full["flops_per_device"] > 1.1 * none["flops_per_device"]
  assert dots["flops_per_device"] < full["flops_per_device"] - 0.5 * (full["flops_per_device"]
                                                                      - none["flops_per_device"])
