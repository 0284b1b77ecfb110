"""A standard and a lexinvariant LM of the same shape, trained by the generic trainer on the same synthetic language
and evaluated on plain and ciphered held-out sequences (lexinvariant spec §6b, L4-L7).

  python -m bench.lexinvariant --language markov --steps 3000 --seed 0 [--probe] [--throughput]
  python -m bench.lexinvariant --language symbolic --steps 3000      # L7: copy / lookup with held-out symbols
  python -m bench.lexinvariant --throughput_only                     # train-step time, standard vs lexinvariant
  python -m bench.lexinvariant --language symbolic --vocab_size 16  # fewer symbols (0 = the config's)
  python -m bench.lexinvariant --language markov --variant semi      # semi-lexinvariant (25% of types random)
  python -m bench.lexinvariant --language char --steps 3000          # character-level text (present types)

Both runs use configs/lexinvariant.py (`:standard` for the baseline) with --steps and --seed; the data stream is
the same for both (same seed). Evaluation: 512 held-out sequences, 4 embedding draws from a fixed key; the cipher
is an independent random permutation of the symbols per sequence. Writes the per-position curves to
WORKDIR/curves.png and WORKDIR/results.json, and ends with one line:
  lex_nll_early=... lex_nll_late=... std_nll_spread=... std_cipher_delta=... lex_cipher_delta=...
(early = target positions 1-4, late = 65-127, spread = max minus min of the standard LM's bin means, deltas =
ciphered minus plain mean NLL). --probe adds the deciphering probes (L6: linear and MLP, on the ciphertext hidden
states, plaintext labels); --throughput times both compiled train steps alternately in this process.
"""
import json
import os
import statistics
import time

from absl import app, flags

from bench import record

_LANGUAGE = flags.DEFINE_enum("language", "markov", ["markov", "zipf", "unigram", "symbolic", "char"],
                               "Synthetic language, or char: character-level text of the embedded corpus.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps of each model.")
_SEED = flags.DEFINE_integer("seed", 0, "Run seed (initialisation, data order, embedding draws).")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/lexinvariant_bench", "Where the two runs and the outputs go.")
_PROBE = flags.DEFINE_bool("probe", False, "Also train the deciphering probes (L6).")
_THROUGHPUT = flags.DEFINE_bool("throughput", False, "Also time both train steps (BENCHMARKS.md).")
_THROUGHPUT_ONLY = flags.DEFINE_bool("throughput_only", False, "Only time both train steps (no training runs).")
_VOCAB = flags.DEFINE_integer("vocab_size", 0, "Symbols of the synthetic language (0: the config's).")
_TIMED = flags.DEFINE_integer("timed_steps", 30, "Timed steps of each model for the throughput figures.")
_VARIANT = flags.DEFINE_enum("variant", "lexinvariant", ["lexinvariant", "semi"],
                             "The arm compared with the standard LM: lexinvariant, or semi-lexinvariant "
                             "(configs/lexinvariant.py:semi, model.semi_fraction=0.25).")


def _config(standard: bool):
  from configs import lexinvariant
  arm = "standard" if standard else "semi" if _VARIANT.value == "semi" else ""
  args = [a for a in (arm, ("" if _LANGUAGE.value == "markov" else _LANGUAGE.value)) if a]
  c = lexinvariant.get_config(",".join(args))
  c.unlock()
  c.seed = _SEED.value
  if _VOCAB.value:
    c.data.vocab_size = _VOCAB.value
  c.train.num_steps = _STEPS.value
  c.train.eval_every = c.train.checkpoint_every = _STEPS.value
  if _PROBE.value:
    c.eval.analyses = tuple(c.eval.analyses) + ("probe",)
  return c


def _throughput(configs, steps: int) -> dict:
  """Median step time of each config's compiled train step, the two timed alternately (one step each in turn)."""
  import flax.linen as nn
  import jax
  from train.experiment import build_experiment
  runs = {}
  for name, c in configs.items():
    exp = build_experiment(c, devices=jax.devices()[:1])
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
      state, step = exp.init_state(), exp.compiled_train_step()
      it = exp.train_iterator()
      batches = [exp.to_device(next(it)) for _ in range(4)]
    runs[name] = {"exp": exp, "state": state, "step": step, "batches": batches, "times": []}
  for i in range(steps + 2):
    for r in runs.values():
      with jax.set_mesh(r["exp"].mesh):
        t = time.perf_counter()
        r["state"], m = r["step"](r["state"], r["batches"][i % 4])
        jax.block_until_ready(m["loss"])
        if i >= 2:
          r["times"].append(time.perf_counter() - t)
  tokens = next(iter(configs.values())).train.batch_size * next(iter(configs.values())).data.seq_len
  return {name: {"step_s": statistics.median(r["times"]), "tokens_per_s": tokens / statistics.median(r["times"])}
          for name, r in runs.items()}


def _plot(results, path, language):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4))
  for name, style in (("standard", "-"), ("lexinvariant", "-")):
    for split, alpha in (("positions", 1.0), ("cipher", 0.6)):
      if split in results[name]:
        curve = results[name][split]["curve"]
        xs = [i for i, v in enumerate(curve) if v is not None]
        ax.plot(xs, [curve[i] for i in xs], style if split == "positions" else "--", alpha=alpha,
                label=f"{name}, {'plain' if split == 'positions' else 'ciphered'}")
  ax.set_xscale("log")
  ax.set_xlabel("target position in the sequence")
  ax.set_ylabel("NLL (nats)")
  ax.set_title(f"{language} language: standard vs lexinvariant LM")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv):
  del argv
  import jax
  from models.causal_lm.analysis import relative_gap
  from train.evaluation import run_evals
  from train.restore import load_trained
  from train.loop import train
  os.makedirs(_WORKDIR.value, exist_ok=True)
  if _THROUGHPUT_ONLY.value:
    from bench.timing import cpu_model
    load = os.getloadavg()[0]
    tp = _throughput({"standard": _config(True), "lexinvariant": _config(False)}, _TIMED.value)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.devices()[0].platform}); "
          f"load average before {load:.2f}")
    for name, r in tp.items():
      print(f"{name}: step {r['step_s'] * 1e3:.2f} ms, {r['tokens_per_s']:,.0f} tokens/s")
    print(f"step-time ratio lexinvariant / standard: {tp['lexinvariant']['step_s'] / tp['standard']['step_s']:.3f}")
    arm = "semi-lexinvariant" if _VARIANT.value == "semi" else "lexinvariant"
    record.write("lexinvariant", {"language": _LANGUAGE.value, "variant": _VARIANT.value, "timed_steps": _TIMED.value,
                                  "load_average_before": load, **tp}, headline=[
        record.row(f"{_LANGUAGE.value} LM train step: {arm}", tp["lexinvariant"]["step_s"] * 1e3,
                   tp["standard"]["step_s"] * 1e3, "ms", higher_is_better=False, reference_name="standard LM")])
    return
  results, configs, seconds = {}, {}, {}
  for name, standard in (("standard", True), ("lexinvariant", False)):
    c = configs[name] = _config(standard)
    tag = "" if standard else f"_{c.model.lex_sample}" + ("_semi" if _VARIANT.value == "semi" else "")
    wd = os.path.join(_WORKDIR.value, f"{name}{tag}_{_LANGUAGE.value}_v{c.data.vocab_size}_s{_SEED.value}_"
                      f"n{_STEPS.value}")
    t = time.perf_counter()
    metrics = train(c, wd)
    seconds[name] = time.perf_counter() - t
    exp, step, params = load_trained(c, wd)
    with jax.set_mesh(exp.mesh):
      results[name] = {"final_eval": metrics, **run_evals(exp.family.evals, params)}
  out = {"language": _LANGUAGE.value, "variant": _VARIANT.value, "steps": _STEPS.value, "seed": _SEED.value,
         "train_seconds": seconds,
         **results}
  std, lex = results["standard"], results["lexinvariant"]
  if "positions" in std:
    out["relative_gap"] = relative_gap(lex["positions"]["bins"], std["positions"]["bins"])
  if _THROUGHPUT.value:
    out["throughput"] = _throughput(configs, _TIMED.value)
  with open(os.path.join(_WORKDIR.value, "results.json"), "w") as f:
    json.dump(out, f, indent=1)
  _plot(results, os.path.join(_WORKDIR.value, "curves.png"), _LANGUAGE.value)
  if _VARIANT.value == "semi":
    print("the arm labelled lexinvariant below is the semi-lexinvariant LM (model.semi_fraction=0.25)")
  for name in ("standard", "lexinvariant"):
    r = results[name]
    print(f"{name}: train {seconds[name]:.0f} s | plain bins {json.dumps(r['positions']['bins'])}")
    if "cipher" in r:
      print(f"{name}: ciphered bins {json.dumps(r['cipher']['bins'])} | delta {r['cipher']['delta_mean']:+.4f}")
    if "probe" in r:
      print(f"{name}: probe {json.dumps(r['probe'])}")
    if "symbolic" in r:
      print(f"{name}: symbolic exact match {json.dumps(r['symbolic'])}")
  if "relative_gap" in out:
    print("relative perplexity gap (ppl_lex - ppl_std) / ppl_std by bin: " +
          json.dumps({k: round(v, 3) for k, v in out["relative_gap"].items()}))
  if "throughput" in out:
    tp = out["throughput"]
    print(f"throughput: standard {tp['standard']['tokens_per_s']:,.0f} tokens/s, lexinvariant "
          f"{tp['lexinvariant']['tokens_per_s']:,.0f} tokens/s, step-time ratio lex/std "
          f"{tp['lexinvariant']['step_s'] / tp['standard']['step_s']:.3f}")
  print(f"wrote {_WORKDIR.value}/results.json and {_WORKDIR.value}/curves.png")
  lb, sb = lex["positions"]["bins"], std["positions"]["bins"]
  line = (f"lex_nll_early={lb['1-4']:.4f} lex_nll_late={lb.get('65-127', float('nan')):.4f} "
          f"std_nll_spread={max(sb.values()) - min(sb.values()):.4f}")
  if "cipher" in std:
    line += f" std_cipher_delta={std['cipher']['delta_mean']:.4f} lex_cipher_delta={lex['cipher']['delta_mean']:.4f}"
  record.write("lexinvariant_runs", out)   # the training runs (RESULTS.md); the throughput record is lexinvariant
  print(line)


if __name__ == "__main__":
  app.run(main)
