"""ELECTRA vs masked-LM pretraining at equal training FLOPs, judged by fine-tuning (the ELECTRA paper's claim).

  python -m bench.electra_vs_mlm [--electra_steps=3000 --pretrain_seeds=0,1 --finetune_seeds=0,1,2]
                                 [--workdir=/tmp/electra_vs_mlm]

Arms (same discriminator-sized encoder, `configs/electra.py` default shape: 4 layers, d 256, E 128, SentencePiece
4k, seq 128, batch 16, on the standard library's source):
  electra  `configs/electra.py`: generator 1/4 + discriminator, loss MLM + 50 x RTD, --electra_steps steps.
  mlm      `configs/electra.py:mlm`: the same encoder as a masked LM (BERT recipe: 15%, 80/10/10), trained for
           as many steps as give the same training FLOPs (ELECTRA's generator FLOPs counted: the FLOP model of
           each bundle, models/electra/config.py).
  scratch  no pretraining (fine-tuning only), for reference.
Each pretrained encoder is fine-tuned with `configs/electra_finetune.py` (the ELECTRA discriminator; the MLM
model's encoder) on the 8-class stdlib-package task, once per fine-tuning seed; the score is validation
accuracy on --eval_batches x 16 paragraphs. Prints one JSON line per run and a Markdown table for RESULTS.md;
everything (workdirs, results.json) is under --workdir.
"""
import json
import os
import statistics
import time

from absl import app, flags

from bench import record

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/electra_vs_mlm", "Where runs and results.json go.")
_ELECTRA_STEPS = flags.DEFINE_integer("electra_steps", 3000, "ELECTRA pretraining steps (MLM gets equal FLOPs).")
_PRETRAIN_SEEDS = flags.DEFINE_list("pretrain_seeds", ["0", "1"], "Pretraining seeds.")
_FINETUNE_SEEDS = flags.DEFINE_list("finetune_seeds", ["0", "1", "2"], "Fine-tuning seeds per pretrained model.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 300, "Fine-tuning steps.")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", 48, "Validation batches of 16 for the fine-tuning score.")


def _pretrain_config(arm: str, steps: int, seed: int):
  from configs import electra
  c = electra.get_config("mlm" if arm == "mlm" else None)
  c.unlock()
  c.seed = seed
  c.train.num_steps = steps
  c.train.eval_every = c.train.checkpoint_every = steps
  c.optim.warmup_steps = max(1, steps // 10)
  c.checkpoint.async_save = False
  return c


def _finetune_config(arm: str, seed: int, init_from: str):
  from configs import electra_finetune
  c = electra_finetune.get_config("mlm" if arm == "mlm" else None)
  c.unlock()
  c.seed = seed
  c.train.num_steps = _FINETUNE_STEPS.value
  c.train.eval_every = c.train.checkpoint_every = _FINETUNE_STEPS.value
  c.eval.num_batches = _EVAL_BATCHES.value
  c.checkpoint.init_from = init_from
  c.checkpoint.async_save = False
  return c


def flops_per_step(config) -> float:
  from train.experiment import build_experiment
  exp = build_experiment(config)
  return exp.family.flops_per_token(config.data.seq_len) * config.train.batch_size * config.data.seq_len


def main(argv):
  del argv
  from train.loop import train
  root = _WORKDIR.value
  os.makedirs(root, exist_ok=True)
  e_steps = _ELECTRA_STEPS.value
  f_electra = flops_per_step(_pretrain_config("electra", e_steps, 0))
  f_mlm = flops_per_step(_pretrain_config("mlm", e_steps, 0))
  m_steps = int(round(e_steps * f_electra / f_mlm))
  budget = {"electra": (e_steps, f_electra), "mlm": (m_steps, f_mlm)}
  print(json.dumps({"electra_flops_per_step": f_electra, "mlm_flops_per_step": f_mlm, "electra_steps": e_steps,
                    "mlm_steps": m_steps, "total_pretrain_flops": e_steps * f_electra}), flush=True)
  results = []
  for arm in ("electra", "mlm", "scratch"):
    seeds = _PRETRAIN_SEEDS.value if arm != "scratch" else ["-"]
    for pseed in seeds:
      init_from, pre_metrics, pre_s = "", {}, 0.0
      if arm != "scratch":
        steps = budget[arm][0]
        init_from = os.path.join(root, f"{arm}_pre{pseed}")
        t = time.time()
        pre_metrics = train(_pretrain_config(arm, steps, int(pseed)), init_from)
        pre_s = time.time() - t
      for fseed in _FINETUNE_SEEDS.value:
        ft_arm = "electra" if arm == "scratch" else arm
        t = time.time()
        m = train(_finetune_config(ft_arm, int(fseed), init_from), os.path.join(root, f"{arm}_pre{pseed}_ft{fseed}"))
        row = {"arm": arm, "pretrain_seed": pseed, "finetune_seed": fseed,
               "pretrain_steps": budget[arm][0] if arm != "scratch" else 0,
               "pretrain_flops": budget[arm][0] * budget[arm][1] if arm != "scratch" else 0.0,
               "pretrain_eval": {k: pre_metrics[k] for k in pre_metrics if k != "num_targets"},
               "pretrain_s": pre_s, "finetune_s": time.time() - t, "accuracy": m["accuracy"], "loss": m["loss"]}
        results.append(row)
        print(json.dumps(row), flush=True)
  with open(os.path.join(root, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  print("\n| arm | pretraining steps | pretraining PFLOP | fine-tuned accuracy, mean ± sd (n) | per run |")
  print("|---|---|---|---|---|")
  for arm in ("electra", "mlm", "scratch"):
    rows = [r for r in results if r["arm"] == arm]
    accs = [r["accuracy"] for r in rows]
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"| {arm} | {rows[0]['pretrain_steps']} | {rows[0]['pretrain_flops'] / 1e15:.3f} | "
          f"{statistics.mean(accs):.3f} ± {sd:.3f} ({len(accs)}) | {', '.join(f'{a:.3f}' for a in accs)} |")
  budgets = {arm: {"steps": st, "flops_per_step": f} for arm, (st, f) in budget.items()}
  record.write("electra_vs_mlm", {"budget": budgets, "runs": results})   # a quality comparison (RESULTS.md)


if __name__ == "__main__":
  app.run(main)
