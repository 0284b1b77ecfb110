"""A trained run for the benchmarks that need one (flag-free: any benchmark may import it)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trained_causal_lm(workdir: str):
  """(config, experiment, step, params) of configs/causal_lm.py's run in `workdir`, trained there first (launch.py,
  about 5 minutes on 2 cores) when it holds no checkpoint."""
  import configs
  from configs import causal_lm
  from models.family import install_registry
  from train.restore import load_trained
  install_registry(configs.REGISTRY)
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), f"--config={ROOT}/configs/causal_lm.py",
                    f"--workdir={workdir}"], check=True)
  config = causal_lm.get_config()
  return (config, *load_trained(config, workdir))
