"""ELECTRA-small joint pretraining step: ours (Flax, jitted) against transformers' PyTorch generator + discriminator.

  python -m bench.electra_throughput [--batch=32 --seq=128 --repeats=5 --rounds=3] [--dtype=float32,bfloat16]
      [--grad_accum=1,4u]

Same config on both sides: ELECTRA-small discriminator (12 layers, d 256, E 128, vocab 30,522) with the paper's
1/4 generator (d 64, 1 head, FFN 256), embeddings shared (in torch the generator's `electra.embeddings` module is
the discriminator's), dropout 0, float32, same random init (HF's, converted by models.hf). One training step =
mask 15% (85% [MASK]), generator forward, sample replacements from its softmax (no gradient), discriminator
forward, loss MLM + 50 x BCE, backward, AdamW update.
HF side as a user writes it with transformers: ElectraForMaskedLM(labels=...) computes logits at every position
(transformers has no joint class and no sparse head); ours runs the generator head at the N masked slots only, as
the original implementation does. A second HF variant ("head on masked only") runs the generator's encoder, then its
head on the masked positions only: the same algorithm as ours. The FLOP count (and MFU) is ours.
Ours is the generic trainer's train step (train/step.py, state donated) with the batch passed as an argument (a
constant batch would let XLA fold the masking); --grad_accum adds sides with its micro-batching (e.g. 4u: four
micro-batches unrolled, which XLA:CPU runs concurrently).
Timing: median of --repeats steps after a warm-up, sides interleaved over --rounds rounds in one process; our
compile time excluded and reported. The float32 matmul peak is measured in the same run for MFU. --dtype adds our
step in bfloat16 (`dtype=bfloat16`: bf16 matmul operands, float32 accumulation, parameters, softmax and losses)
as another side of the same rounds; its ratio is against our float32 step.
Needs requirements-test.txt (torch, transformers).
"""
import json
import os
import platform
import statistics

from absl import app, flags

from bench import record
from bench.electra_steps import RATE, V, hf_models, hf_step_fn, our_step_fn
from bench.timing import grad_accum_variant, median_seconds

_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_SEQ = flags.DEFINE_integer("seq", 128, "Sequence length.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per round and side.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds (ours, HF, ours, HF, ...).")
_DTYPE = flags.DEFINE_list("dtype", ["float32"], "Our compute dtypes (float32 always; bfloat16 adds a side).")
_ACCUM = flags.DEFINE_list("grad_accum", ["1"], "Our float32 step's micro-batching, one side each: k = "
                           "train.grad_accum_steps=k (a scan), ku = the same unrolled (train.grad_accum_unroll). The "
                           "first is 'ours' in the table; the others are printed against it and against HF.")


def main(argv):
  del argv
  import numpy as np
  import torch

  from train.flops import measure_matmul_peak
  B, S = _BATCH.value, _SEQ.value
  accum = [grad_accum_variant(v) for v in _ACCUM.value]
  peak = measure_matmul_peak()
  ids = np.random.default_rng(0).integers(999, V, (B, S))
  gen, disc = hf_models()
  ours, compile_s, cfg, _ = our_step_fn(gen, disc, ids, B, S, "float32", *accum[0])
  sides = {"ours": ours, "hf": hf_step_fn(gen, disc, ids, B, S),
           "hf_sparse": hf_step_fn(gen, disc, ids, B, S, sparse_head=True)}
  compiles = {}
  for v, (k, unroll) in zip(_ACCUM.value[1:], accum[1:]):
    sides[f"ours_{v}"], compiles[v], _, _ = our_step_fn(gen, disc, ids, B, S, "float32", k, unroll)
  if "bfloat16" in _DTYPE.value:
    sides["ours_bf16"], compile_bf16_s, _, _ = our_step_fn(gen, disc, ids, B, S, "bfloat16")
  for fn in sides.values():
    fn()
  times = {k: [] for k in sides}
  for _ in range(_ROUNDS.value):
    for k, fn in sides.items():
      times[k].append(median_seconds(fn, _REPEATS.value))
  step = {k: statistics.median(v) for k, v in times.items()}
  tps = {k: B * S / v for k, v in step.items()}
  flops = cfg.flops_per_token(S, RATE)
  result = {"grad_accum": _ACCUM.value, "batch": B, "seq": S, "step_s": step, "tokens_per_s": tps,
            "ratio": tps["ours"] / tps["hf"],
            "ratio_vs_sparse_head": tps["ours"] / tps["hf_sparse"], "our_compile_s": compile_s,
            "train_flops_per_token": flops, "f32_peak_gflops": peak / 1e9,
            "our_mfu": flops * tps["ours"] / peak, "rounds": times, "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "load_avg_before": os.getloadavg()[0]}
  print(json.dumps(result, indent=1))
  print(f"\n| batch x seq | ours tokens/s | HF tokens/s | ratio | HF, head on masked only | ratio | our compile (s) "
        f"| our MFU (f32 peak {peak / 1e9:.0f} GFLOP/s) |\n|---|---|---|---|---|---|---|---|\n| {B} x {S} | "
        f"{tps['ours']:,.0f} | {tps['hf']:,.0f} | {tps['ours'] / tps['hf']:.2f}x | {tps['hf_sparse']:,.0f} | "
        f"{tps['ours'] / tps['hf_sparse']:.2f}x | {compile_s:.1f} | {100 * result['our_mfu']:.1f}% |")
  for v in _ACCUM.value[1:]:
    r = [a / b for a, b in zip(times["ours"], times[f"ours_{v}"])]
    print(f"\nours with --grad_accum={v}: {tps[f'ours_{v}']:,.0f} tokens/s, {tps[f'ours_{v}'] / tps['hf']:.2f}x HF, "
          f"{tps[f'ours_{v}'] / tps['hf_sparse']:.2f}x HF head-on-masked, {tps[f'ours_{v}'] / tps['ours']:.2f}x ours "
          f"(per round: {' / '.join(f'{x:.2f}' for x in r)}; compile {compiles[v]:.1f}s)")
  if "ours_bf16" in tps:
    print(f"\nbfloat16 (ours): {tps['ours_bf16']:,.0f} tokens/s, {tps['ours_bf16'] / tps['ours']:.2f}x our float32 "
          f"step, {tps['ours_bf16'] / tps['hf_sparse']:.2f}x HF head-on-masked float32 (compile {compile_bf16_s:.1f}s)")
  what = f"ELECTRA-small joint train step ({B} x {S}), float32"
  record.write("electra_throughput", result, headline=[
      record.row(what, tps["ours"], tps["hf"], "tokens/s", reference_name="transformers"),
      record.row(what, tps["ours"], tps["hf_sparse"], "tokens/s",
                 reference_name="transformers, generator head on masked only")])


if __name__ == "__main__":
  app.run(main)
