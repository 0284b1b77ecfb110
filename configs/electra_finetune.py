"""Fine-tune an ELECTRA discriminator (or the same-size masked-LM baseline) on the stdlib-package task: which of 8
standard-library packages a paragraph of source comes from (the task used for ModernBERT fine-tuning).

Commands (2-core CPU):
  python launch.py --config=configs/electra.py --workdir=/tmp/electra
  python launch.py --config=configs/electra_finetune.py --workdir=/tmp/electra_ft \\
      --config.checkpoint.init_from=/tmp/electra
  # the masked-LM baseline: pretrain with configs/electra.py:mlm, fine-tune with configs/electra_finetune.py:mlm
Expected result: validation accuracy well above the majority-class baseline (0.345); bench/electra_vs_mlm.py runs
both arms at equal pretraining FLOPs with several seeds (RESULTS.md).
Argument: the same as configs/electra.py; "mlm" reads the encoder from the baseline's checkpoint ("generator").
"""
from configs.base import use_stdlib_packages_task
from configs.electra import get_config as electra_config


def get_config(arg: str | None = None):
  c = electra_config(arg)
  c.unlock()
  c.model.name = "electra_classifier"
  c.model.electra_tower = "generator" if "mlm" in (arg or "").split(",") else "discriminator"
  use_stdlib_packages_task(c)
  c.lock()
  return c
