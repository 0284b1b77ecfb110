"""Fine-tune ModernBERT to classify which standard-library package a paragraph of source comes from (8 classes).

Commands (2-core CPU; the first is the default pretraining job, the second loads its encoder and MLM head weights
and trains a fresh classifier):
  python launch.py --workdir=/tmp/modernbert_mlm
  python launch.py --config=configs/modernbert_finetune.py --workdir=/tmp/modernbert_ft \\
      --config.checkpoint.init_from=/tmp/modernbert_mlm
Without init_from it trains from scratch (the baseline). Expected result: validation accuracy well above the
majority-class baseline (0.345) either way; at this scale the 500-step masked-LM initialisation does not beat
training from scratch (RESULTS.md has the measured figures).
"""
from configs.base import use_stdlib_packages_task
from configs.modernbert_mlm import get_config as mlm_config


def get_config(arg: str | None = None):
  del arg
  c = mlm_config()
  c.unlock()
  c.model.name = "modernbert_classifier"
  use_stdlib_packages_task(c)
  c.optim.weight_decay = 0.01
  c.lock()
  return c
