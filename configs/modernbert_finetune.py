"""Fine-tune ModernBERT to classify which standard-library package a paragraph of source comes from (8 classes).

Commands (2-core CPU; the first is the default pretraining job, the second loads its encoder and MLM head weights
and trains a fresh classifier):
  python launch.py --workdir=/tmp/modernbert_mlm
  python launch.py --config=configs/modernbert_finetune.py --workdir=/tmp/modernbert_ft \\
      --config.checkpoint.init_from=/tmp/modernbert_mlm
Without init_from it trains from scratch (the baseline). Expected result: validation accuracy well above the
majority-class baseline (0.345) either way; at this scale the 500-step masked-LM initialisation does not beat
training from scratch (RESULTS.md has the measured figures).
Argument: "tiny" (configs/test_tiny.py's 2-layer d = 32 byte-level shape, 6 steps) for tests and smoke runs.
"""
from configs.base import use_stdlib_packages_task
from configs.modernbert_mlm import get_config as mlm_config
from configs.test_tiny import get_config as tiny_config


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny"):
    raise ValueError(f"configs/modernbert_finetune.py: unknown argument {arg!r}; use 'tiny' or nothing")
  c = tiny_config() if arg == "tiny" else mlm_config()
  c.unlock()
  c.model.name = "modernbert_classifier"
  train = c.train.to_dict()
  use_stdlib_packages_task(c)
  c.optim.weight_decay = 0.01
  if arg == "tiny":       # configs/test_tiny.py's shapes and schedule, 256-character paragraphs
    c.data.max_doc_chars = 256
    c.train.num_steps, c.train.eval_every, c.train.checkpoint_every = (
        train["num_steps"], train["eval_every"], train["checkpoint_every"])
    c.optim.warmup_steps, c.eval.num_batches = 2, 2
  c.lock()
  return c
