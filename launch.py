"""Entry point: train, evaluate, decode or convert an experiment described by an ml_collections config.

  python launch.py --config=configs/modernbert_mlm.py --workdir=/tmp/run [--config.optim.lr=3e-4] [--mode=train]
  python launch.py --workdir=/tmp/run                          # resume a run: its stored config (+ changeable keys)
  python launch.py --workdir=/tmp/run --mode=eval|decode      # the run's stored config (+ eval/decode overrides)
  python launch.py --workdir=/tmp/run --mode=eval --follow     # evaluate each new checkpoint of a running trainer
  python launch.py --workdir=/tmp/run --mode=export_hf --hf_dir=/tmp/hf    # a directory transformers loads
  python launch.py --config=configs/modernbert_mlm.py --mode=import_hf --hf_dir=PATH --workdir=/tmp/imported
      # model.* and the tokenizer read from PATH; then --workdir=/tmp/imported --mode=decode|eval, or
      # --config.checkpoint.init_from=/tmp/imported (ELECTRA: --hf_dir=DISCRIMINATOR,GENERATOR for the pair)
  python launch.py --config=configs/modernbert_mlm.py:base --mode=compile_only --num_cpu_devices=8 \
      [--device_memory_gib=16]    # per-device memory and FLOPs of the compiled steps, nothing run (train/aot.py)
  python launch.py --config=configs/modernbert_mlm.py:base --mode=compile_only --compile_topology=v5p-16 \
      --config.mesh.fsdp=8        # the same for a Cloud TPU slice, with the TPU compiler (requirements-tpu.txt)

Multi-process (the same command on every process; see README "Multi-host"):
  python launch.py ... --coordinator_address=HOST:PORT --num_processes=N --process_id=I
  python launch.py ... --distributed      # Cloud TPU pods / SLURM: JAX detects the cluster
"""
import importlib.util
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "modernbert_mlm.py")
FAMILY_SECTIONS = ("model.", "objective.", "decode.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/lmkit/modernbert_mlm", "Checkpoints, TensorBoard events, metrics.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "decode", "import_hf", "export_hf", "compile_only"],
                          "What to run.")
_TEXT = flags.DEFINE_string("text", "", "decode mode: text to decode (default: config.decode.prompts).")
_HF_DIR = flags.DEFINE_list("hf_dir", [], "import_hf / export_hf: Hugging Face directory (import: one or more).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Start jax.distributed with cluster auto-detection.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "HOST:PORT of process 0 for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes (multi-process runs).")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index (multi-process runs).")
_CPU_DEVICES = flags.DEFINE_integer("num_cpu_devices", 0, "Simulate this many CPU devices (testing sharding).")
_FOLLOW = flags.DEFINE_bool("follow", False, "eval mode: evaluate each new checkpoint of a running training workdir "
                            "(read-only) until its last step (train/follow.py).")
_FOLLOW_POLL = flags.DEFINE_float("follow_poll_s", 5.0, "eval --follow: seconds between looks at the checkpoints.")
_FOLLOW_TIMEOUT = flags.DEFINE_float("follow_timeout_s", 3600.0, "eval --follow: stop after this long without a "
                                     "new checkpoint.")
_DEVICE_MEMORY = flags.DEFINE_float("device_memory_gib", 0.0, "compile_only: memory of one target device (GiB); "
                                    "default: the TPU chip table, else what the runtime reports (unknown on CPU).")
_TOPOLOGY = flags.DEFINE_string("compile_topology", "", "compile_only: compile for this Cloud TPU slice with the "
                                "TPU compiler, on any machine (v4-8, v5p-16, v5litepod-16, v6e-64, or v5p:2x2x2; "
                                "needs requirements-tpu.txt).")
_TOPOLOGY_SLICES = flags.DEFINE_integer("compile_topology_num_slices", 1, "compile_only --compile_topology: that "
                                        "many slices (multi-slice; mesh.data spans them).")


def _config_arg(argv) -> str:
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return DEFAULT_CONFIG


def _family_of(argv) -> str:
  """model.name of the config file named on the command line (for error messages); '' if it cannot be read."""
  for a in argv:
    if a.startswith("--config.model.name="):
      return a.split("=", 1)[1]
  try:
    path, _, arg = _config_arg(argv).partition(":")
    spec = importlib.util.spec_from_file_location("_lmkit_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg or None).model.name
  except Exception:  # noqa: BLE001 - only for a better message
    return ""


def _one_line(e: BaseException, argv) -> str:
  """A flag or config-loading exception as one line naming the key or file and the fix."""
  text = str(e).replace("\\n", " ").replace("\n", " ").strip("'\" ")
  last = re.findall(r"(?:\w+Error|Exception): (.+?)(?=\s+(?:File |Traceback|During handling)|$)", text)
  if "Error whilst parsing config file" in text and last:
    return f"--config={_config_arg(argv)}: {last[-1].strip()}"
  if "No such file or directory" in text or "Attempted [" in text:
    return (f"--config={_config_arg(argv)}: no such config file (give a path such as configs/modernbert_mlm.py, "
            "relative to the working directory, or absolute)")
  overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
  culprit = [o for o in overrides if re.search(rf"\b{re.escape(o.rsplit('.', 1)[-1])}\b", text)]
  hint = re.search(r"Did you mean [^?]*\?", text)
  if hint or isinstance(e, (AttributeError, KeyError)):
    key = culprit[0] if culprit else ""
    family = _family_of(argv) if key[len("--config."):].startswith(FAMILY_SECTIONS) else ""
    if family:
      return (f"model.name={family!r} does not read {key[len('--config.'):]}"
              f"{' (' + hint.group(0) + ')' if hint else ''}; remove the override (the family's keys: its config "
              "file and configs/families/)")
    return (f"unknown config key {key}: {hint.group(0) if hint else text} "
            "(the keys are in the config file and configs/base.py)")
  return text


def _fail(e: BaseException, argv) -> None:
  print(f"error: {_one_line(e, argv)}", file=sys.stderr)
  sys.exit(2)


# The default config is loaded (and the overrides applied to it) when the flag is defined.
try:
  _CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Experiment config file[:arg].",
                                            lock_config=True)
except (AttributeError, KeyError, TypeError, ValueError, OSError, flags.Error) as e:
  _fail(e, sys.argv)


def _parse_flags(argv):
  """absl flag parsing, with config mistakes (file, argument, key, value) reported as one line, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, TypeError, ValueError, OSError, flags.Error) as e:
    _fail(e, argv)


def _overrides(argv, config) -> dict:
  """The --config.a.b=value overrides of the command line, with their parsed values."""
  out = {}
  for a in argv[1:]:
    if a.startswith("--config.") and "=" in a:
      key = a[len("--config."):].split("=", 1)[0]
      node = config
      for part in key.split("."):
        node = node[part]
      out[key] = node
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax and grain log every step at INFO; ours goes to stdout
    logging.set_verbosity(logging.WARNING)
  from train.platforms import keep_cpu_startup_fast
  keep_cpu_startup_fast()   # before JAX starts a backend: no TPU probe on hosts without one (libtpu installed)
  import jax
  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  import configs
  from models.family import install_registry
  from train import distributed
  from train.errors import ConfigError, NonFiniteError, StorageError
  from train.modes import run
  install_registry(configs.REGISTRY)   # the composition root: the trainer looks families up here

  config = _CONFIG.value
  try:
    timeout = config.distributed.init_timeout
  except OSError as e:   # the config file failed to load (ml_collections reports it on first access)
    _fail(e, sys.argv)
  try:
    distributed.maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                 auto=_DISTRIBUTED.value, timeout_s=timeout)
    distributed.log_banner()
    mode = "follow" if _MODE.value == "eval" and _FOLLOW.value else _MODE.value
    run(config, _WORKDIR.value, mode, overrides=_overrides(sys.argv, config),
        config_given=flags.FLAGS["config"].present, text=_TEXT.value, hf_dirs=_HF_DIR.value,
        follow_poll_s=_FOLLOW_POLL.value, follow_timeout_s=_FOLLOW_TIMEOUT.value, topology=_TOPOLOGY.value,
        topology_slices=_TOPOLOGY_SLICES.value, device_memory_gib=_DEVICE_MEMORY.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  except (NonFiniteError, StorageError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main, flags_parser=_parse_flags)
