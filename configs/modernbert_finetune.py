"""Fine-tune ModernBERT to classify which standard-library package a paragraph of source comes from (8 classes).

Commands (2-core CPU; the first is the default pretraining job, the second loads its encoder and MLM head weights
and trains a fresh classifier):
  python launch.py --workdir=/tmp/modernbert_mlm
  python launch.py --config=configs/modernbert_finetune.py --workdir=/tmp/modernbert_ft \\
      --config.checkpoint.init_from=/tmp/modernbert_mlm
Without init_from it trains from scratch (the baseline). Expected result: validation accuracy well above the
majority-class baseline, higher with the pretrained initialisation (RESULTS.md has the measured figures).
"""
from configs.modernbert_mlm import get_config as mlm_config


def get_config(arg: str | None = None):
  del arg
  c = mlm_config()
  c.unlock()
  c.model.name = "modernbert_classifier"
  c.model.pooling = "mean"
  c.data.task = "stdlib_packages"
  c.data.num_classes = 8
  c.data.max_doc_chars = 1024
  c.train.num_steps = 300
  c.train.eval_every = 100
  c.train.checkpoint_every = 300
  c.optim.lr = 3e-4
  c.optim.warmup_steps = 30
  c.optim.weight_decay = 0.01
  c.eval.num_batches = 16
  c.lock()
  return c
