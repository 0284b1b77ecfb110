"""CoT2 against discrete chain of thought on MNNS (Gozeten et al. 2025 §7, §10 C8-C11).

  python -m bench.cot2 --method cot2 --d 32 --epochs 30 --seed 42 [--lr 1e-3] [--beams M]
  python -m bench.cot2 --sweep [--epochs 30] [--seeds 42,43]
  python -m bench.cot2 --speed [--steps 200]

One arm: configs/cot2.py (`csft` for --method cot2, `discrete` otherwise) at width d (MLP 4d), 2 layers, 2 heads,
batch 16, dropout 0.1, AdamW at --lr, --epochs epochs of the seed's training split, trained by the generic trainer
with an evaluation on the whole validation split after every epoch (CoT2: the model's own softmax fed back, argmax
at the end; discrete: greedy decoding after "->", last token vs gold). The last line is `val_acc=... train_s=...`
(train_s: the whole run, compilation and the per-epoch evaluations included).

--sweep: discrete vs CoT2 at d in {16, 24, 32} over --seeds (C8, C9 and the d = 16 control), CSFT on `beam`
targets with M in {1, 16} at d = 16 and 32 (C10, first seed), and GRPO-MTS (K = 3, 8 rollouts, lr 5e-5, 5 epochs)
from the d = 32 CSFT checkpoint of the first seed (C11: MTS validation accuracy before/after, train reward by
epoch). Writes WORKDIR/sweep.json, sweep.md (the tables) and sweep.png (validation accuracy against epoch).
--speed: seconds per epoch of the trainer's compiled step (CSFT and discrete, d = 32), beside the same work in
PyTorch + transformers GPT-2 written the official code's way (bench/cot2_reference.py), measured in one run.
"""
import json
import math
import os
import statistics
import time

from absl import app, flags

from bench import record

_METHOD = flags.DEFINE_enum("method", "cot2", ["cot2", "discrete"], "CoT2 with CSFT, or the discrete CoT baseline")
_D = flags.DEFINE_integer("d", 32, "embedding width (MLP 4d)")
_EPOCHS = flags.DEFINE_integer("epochs", 30, "training epochs")
_SEED = flags.DEFINE_integer("seed", 42, "run seed: the group split, initialisation and data order")
_LR = flags.DEFINE_float("lr", 1e-3, "AdamW learning rate (constant)")
_BEAMS = flags.DEFINE_integer("beams", 0, "CSFT on the M best traces (targets=beam); 0: all traces (uniform)")
_SWEEP = flags.DEFINE_bool("sweep", False, "run the C8-C11 sweep")
_SEEDS = flags.DEFINE_string("seeds", "42,43", "seeds of the sweep")
_SPEED = flags.DEFINE_bool("speed", False, "seconds per epoch against the PyTorch reference")
_STEPS = flags.DEFINE_integer("steps", 200, "--speed: timed steps per measurement")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/cot2_bench", "where runs and results go")


def arm_config(method: str, d: int, epochs: float, seed: int, lr: float, beams: int = 0, grpo: bool = False):
  from configs import cot2
  arg = "grpo_mts" if grpo else ("csft" if method == "cot2" else "discrete")
  c = cot2.get_config(arg + (",beam" if beams else ""))
  c.unlock()
  spe = cot2.steps_per_epoch(c.train.batch_size, seed)
  c.seed = seed
  c.model.hidden_size, c.model.intermediate_size = d, 4 * d
  c.optim.lr = lr
  if beams:
    c.objective.beams = beams
  c.train.num_steps = max(1, round(epochs * spe))
  c.train.eval_every = c.train.log_every = spe
  c.train.checkpoint_every = c.train.num_steps
  c.lock()
  return c


def curve(workdir: str, spe: int) -> dict:
  """Per-epoch validation metrics and mean training metrics from the run's metrics.jsonl."""
  evals, train = {}, {}
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    r = json.loads(line)
    epoch = math.ceil(r["step"] / spe)
    if r["split"] == "eval":
      evals[epoch] = {k: v for k, v in r.items() if k not in ("step", "split")}
    elif r["split"] == "train":
      train.setdefault(epoch, []).append(r)
  train_means = {e: {k: statistics.fmean(x[k] for x in rows) for k in rows[0] if k not in ("step", "split")}
                 for e, rows in train.items()}
  return {"eval": evals, "train": train_means}


def run_arm(method, d, epochs, seed, lr, beams=0, grpo=False, init_from="", tag=""):
  from configs import cot2
  from train.loop import train
  c = arm_config(method, d, epochs, seed, lr, beams, grpo)
  if init_from:
    c.unlock()
    c.checkpoint.init_from = init_from
    c.lock()
  name = tag or f"{'grpo' if grpo else method}_d{d}_s{seed}_e{epochs}_lr{lr:g}" + (f"_m{beams}" if beams else "")
  wd = os.path.join(_WORKDIR.value, name)
  if os.path.exists(os.path.join(wd, "result.json")):
    return json.load(open(os.path.join(wd, "result.json")))
  t = time.perf_counter()
  final = train(c, wd)
  result = {"name": name, "method": "grpo_mts" if grpo else method, "d": d, "seed": seed, "epochs": epochs,
            "lr": lr, "beams": beams, "train_s": round(time.perf_counter() - t, 1), "final": final,
            "curve": curve(wd, cot2.steps_per_epoch(c.train.batch_size, seed)), "workdir": wd}
  json.dump(result, open(os.path.join(wd, "result.json"), "w"), indent=1)
  return result


def evaluate_checkpoint(workdir: str, config) -> dict:
  """The evaluation objective of `config` (e.g. GRPO's MTS decoding) on a trained run's latest parameters."""
  import flax.linen as nn
  import jax
  from train.evaluation import evaluate
  from train.restore import load_trained
  exp, _, params = load_trained(config, workdir)
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    return evaluate(exp, params)


def sweep():
  seeds = [int(s) for s in _SEEDS.value.split(",")]
  E, lr = _EPOCHS.value, _LR.value
  out = {"epochs": E, "lr": lr, "seeds": seeds, "arms": []}
  for d in (16, 24, 32):
    for seed in seeds:
      for method in ("cot2", "discrete"):
        out["arms"].append(run_arm(method, d, E, seed, lr))
        print(f"{out['arms'][-1]['name']}: val_acc={out['arms'][-1]['final']['accuracy']:.4f}", flush=True)
  for d in (16, 32):
    for m in (1, 16):
      out["arms"].append(run_arm("cot2", d, E, seeds[0], lr, beams=m))
      print(f"{out['arms'][-1]['name']}: val_acc={out['arms'][-1]['final']['accuracy']:.4f}", flush=True)
  # C11: GRPO-MTS from the d = 32 CSFT checkpoint of the first seed.
  base = next(a for a in out["arms"] if a["method"] == "cot2" and a["d"] == 32 and a["seed"] == seeds[0]
              and not a["beams"])
  before = evaluate_checkpoint(base["workdir"], arm_config("cot2", 32, 1, seeds[0], 5e-5, grpo=True))
  grpo = run_arm("cot2", 32, 5, seeds[0], 5e-5, grpo=True, init_from=base["workdir"])
  out["grpo"] = {"before": before, "after": grpo["final"], "reward_by_epoch": {
      e: m["reward"] for e, m in grpo["curve"]["train"].items()}, "train_s": grpo["train_s"]}
  json.dump(out, open(os.path.join(_WORKDIR.value, "sweep.json"), "w"), indent=1)
  write_tables(out)
  plot(out)
  record.write("cot2_sweep", out)   # the C8-C11 runs (RESULTS.md); the speed record is cot2


def _acc(arm, epoch=None):
  ev = arm["curve"]["eval"]
  e = max(ev, key=int) if epoch is None else epoch
  return ev.get(e, ev.get(str(e), {})).get("accuracy", float("nan"))


def write_tables(out):
  lines = [f"epochs {out['epochs']}, lr {out['lr']:g}, seeds {out['seeds']}", "",
           "| d | seed | CoT2 ep 15 | CoT2 final | discrete ep 15 | discrete final | gap | CoT2 train s |",
           "|---|---|---|---|---|---|---|---|"]
  arms = [a for a in out["arms"] if not a["beams"]]
  for d in (16, 24, 32):
    for seed in out["seeds"]:
      c = next(a for a in arms if a["d"] == d and a["seed"] == seed and a["method"] == "cot2")
      x = next(a for a in arms if a["d"] == d and a["seed"] == seed and a["method"] == "discrete")
      lines.append(f"| {d} | {seed} | {_acc(c, 15):.3f} | {_acc(c):.3f} | {_acc(x, 15):.3f} | {_acc(x):.3f} | "
                   f"{_acc(c) - _acc(x):+.3f} | {c['train_s']:.0f} |")
  lines += ["", "| d | M = 1 | M = 16 | uniform |", "|---|---|---|---|"]
  for d in (16, 32):
    m = {a["beams"]: _acc(a) for a in out["arms"] if a["d"] == d and a["seed"] == out["seeds"][0]
         and a["method"] == "cot2"}
    lines.append(f"| {d} | {m[1]:.3f} | {m[16]:.3f} | {m[0]:.3f} |")
  g = out["grpo"]
  lines += ["", f"GRPO-MTS (K=3, 8 rollouts, lr 5e-5, 5 epochs) from CSFT d=32: MTS val accuracy "
            f"{g['before']['accuracy']:.4f} -> {g['after']['accuracy']:.4f}; self-fed "
            f"{g['before']['soft_accuracy']:.4f} -> {g['after']['soft_accuracy']:.4f}; train reward by epoch "
            + ", ".join(f"{float(v):.3f}" for _, v in sorted(g["reward_by_epoch"].items(), key=lambda kv: int(kv[0])))]
  open(os.path.join(_WORKDIR.value, "sweep.md"), "w").write("\n".join(lines) + "\n")
  print("\n".join(lines))


def plot(out):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
  for ax, d in zip(axes, (16, 24, 32)):
    for a in out["arms"]:
      if a["d"] != d or a["beams"]:
        continue
      ev = a["curve"]["eval"]
      es = sorted(int(e) for e in ev)
      ax.plot(es, [_acc(a, e) for e in es], ("-" if a["method"] == "cot2" else "--"),
              label=f"{'CoT2' if a['method'] == 'cot2' else 'discrete'} s{a['seed']}")
    ax.axhline(0.3425, color="gray", lw=0.8)
    ax.set_title(f"d = {d}")
    ax.set_xlabel("epoch")
  axes[0].set_ylabel("validation accuracy")
  axes[-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(_WORKDIR.value, "sweep.png"), dpi=110)


def speed():
  import flax.linen as nn
  import jax
  from bench import cot2_reference
  from bench.timing import cpu_model
  from configs import cot2
  from train.experiment import build_experiment
  spe = cot2.steps_per_epoch()
  rows = {}
  for method in ("cot2", "discrete"):
    c = arm_config(method, 32, 1, 42, 1e-3)
    exp = build_experiment(c, devices=jax.devices()[:1])
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
      state = exp.init_state()
      step = exp.compiled_train_step()
      it = exp.train_iterator()
      batches = [exp.to_device(next(it)) for _ in range(_STEPS.value + 5)]
      times = []
      for i, b in enumerate(batches):
        t = time.perf_counter()
        state, m = step(state, b)
        jax.block_until_ready(m["loss"])
        if i >= 5:
          times.append(time.perf_counter() - t)
    ours = statistics.median(times)
    ref = cot2_reference.step_seconds(method, d=32, steps=_STEPS.value)
    rows[method] = {"ours_step_ms": ours * 1e3, "ours_epoch_s": ours * spe, "torch_step_ms": ref["step_s"] * 1e3,
                    "torch_epoch_s": ref["step_s"] * spe, "torch_threads": ref["threads"],
                    "speedup": ref["step_s"] / ours}
    print(f"{method}: ours {ours * 1e3:.2f} ms/step = {ours * spe:.2f} s/epoch | torch ({ref['threads']} threads) "
          f"{ref['step_s'] * 1e3:.2f} ms/step = {ref['step_s'] * spe:.2f} s/epoch | {ref['step_s'] / ours:.1f}x",
          flush=True)
  rows["machine"] = f"{cpu_model()}, {os.cpu_count()} cores"
  rows["steps_per_epoch"] = spe
  json.dump(rows, open(os.path.join(_WORKDIR.value, "speed.json"), "w"), indent=1)
  record.write("cot2", rows, headline=[
      record.row(f"{label} train step on MNNS (d = 32, batch 16)", rows[method]["ours_step_ms"],
                 rows[method]["torch_step_ms"], "ms/step", higher_is_better=False,
                 reference_name="PyTorch + transformers")
      for method, label in (("cot2", "CoT2 (CSFT)"), ("discrete", "discrete CoT"))])


def main(argv):
  del argv
  os.makedirs(_WORKDIR.value, exist_ok=True)
  if _SPEED.value:
    return speed()
  if _SWEEP.value:
    return sweep()
  r = run_arm(_METHOD.value, _D.value, _EPOCHS.value, _SEED.value, _LR.value, _BEAMS.value)
  curve_line = " ".join(f"{int(e)}:{v['accuracy']:.3f}" for e, v in sorted(r["curve"]["eval"].items(),
                                                                             key=lambda kv: int(kv[0])))
  print(f"validation accuracy by epoch: {curve_line}")
  record.write("cot2_arm", r)   # one training run (RESULTS.md); the speed record is cot2
  print(f"val_acc={r['final']['accuracy']:.4f} train_s={r['train_s']:.1f}")


if __name__ == "__main__":
  app.run(main)
