"""Entry point: train, evaluate or decode an experiment described by an ml_collections config.

  python launch.py --config=configs/modernbert_mlm.py --workdir=/tmp/run [--config.optim.lr=3e-4] [--mode=train]

Multi-process (the same command on every process; see README "Multi-host"):
  python launch.py ... --coordinator_address=HOST:PORT --num_processes=N --process_id=I
  python launch.py ... --distributed      # Cloud TPU pods / SLURM: JAX detects the cluster
"""
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/modernbert_mlm.py", "Experiment config file[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/lmkit/modernbert_mlm", "Checkpoints, TensorBoard events, metrics.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "decode"], "What to run.")
_TEXT = flags.DEFINE_string("text", "", "decode mode: text whose [MASK]s are filled (default: config.decode.prompts).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Start jax.distributed with cluster auto-detection.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "HOST:PORT of process 0 for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes (multi-process runs).")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index (multi-process runs).")
_CPU_DEVICES = flags.DEFINE_integer("num_cpu_devices", 0, "Simulate this many CPU devices (testing sharding).")


def _parse_flags(argv):
  """absl flag parsing, with config override mistakes reported as one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, TypeError, ValueError, flags.Error) as e:
    text = str(e).replace("\\n", " ").replace("\n", " ").strip("'\" ")
    overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    culprit = [o for o in overrides if re.search(rf"\b{re.escape(o.rsplit('.', 1)[-1])}\b", text)]
    hint = re.search(r"Did you mean [^?]*\?", text)
    if hint or isinstance(e, (AttributeError, KeyError)):
      text = (f"unknown config key {culprit[0] if culprit else ''}: {hint.group(0) if hint else text} "
              "(the keys are in the config file and configs/base.py)")
    print(f"error: {text}", file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax and grain log every step at INFO; ours goes to stdout
    logging.set_verbosity(logging.WARNING)
  import jax
  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  from train import distributed
  from train.errors import ConfigError
  from train.loop import run

  config = _CONFIG.value
  distributed.maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, auto=_DISTRIBUTED.value,
                               timeout_s=config.distributed.init_timeout)
  distributed.log_banner()
  try:
    run(config, _WORKDIR.value, _MODE.value, _TEXT.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main, flags_parser=_parse_flags)
