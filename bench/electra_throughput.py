"""ELECTRA-small joint pretraining step: ours (Flax, jitted) against transformers' PyTorch generator + discriminator.

  python -m bench.electra_throughput [--batch=32 --seq=128 --repeats=5 --rounds=3] [--dtype=float32,bfloat16]

Same config on both sides: ELECTRA-small discriminator (12 layers, d 256, E 128, vocab 30,522) with the paper's
1/4 generator (d 64, 1 head, FFN 256), embeddings shared (in torch the generator's `electra.embeddings` module is
the discriminator's), dropout 0, float32, same random init (HF's, converted by models.hf). One training step =
mask 15% (85% [MASK]), generator forward, sample replacements from its softmax (no gradient), discriminator
forward, loss MLM + 50 x BCE, backward, AdamW update.
HF side as a user writes it with transformers: ElectraForMaskedLM(labels=...) computes logits at every position
(transformers has no joint class and no sparse head); ours runs the generator head at the N masked slots only, as
the original implementation does. A second HF variant ("head on masked only") runs the generator's encoder, then its
head on the masked positions only: the same algorithm as ours. The FLOP count (and MFU) is ours.
Ours is one jitted step with the batch passed as an argument (a constant batch would let XLA fold the masking).
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
import time

from absl import app, flags

from bench.timing import median_seconds

_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_SEQ = flags.DEFINE_integer("seq", 128, "Sequence length.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per round and side.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds (ours, HF, ours, HF, ...).")
_DTYPE = flags.DEFINE_list("dtype", ["float32"], "Our compute dtypes (float32 always; bfloat16 adds a side).")

V, MASK, RATE = 30522, 103, 0.15


def _hf_models():
  import torch
  import transformers
  torch.manual_seed(0)
  common = dict(vocab_size=V, embedding_size=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  disc = transformers.ElectraForPreTraining(transformers.ElectraConfig(
      hidden_size=256, num_hidden_layers=12, num_attention_heads=4, intermediate_size=1024, **common))
  gen = transformers.ElectraForMaskedLM(transformers.ElectraConfig(
      hidden_size=64, num_hidden_layers=12, num_attention_heads=1, intermediate_size=256, **common))
  gen.electra.embeddings = disc.electra.embeddings          # one shared module, as in ELECTRA pretraining
  gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
  return gen.train(), disc.train()


def _hf_step_fn(gen, disc, ids, B, S, sparse_head=False):
  import torch
  params = list({id(p): p for p in list(gen.parameters()) + list(disc.parameters())}.values())
  opt = torch.optim.AdamW(params, lr=1e-4)
  x = torch.tensor(ids)
  g = torch.Generator().manual_seed(0)

  def step():
    selected = torch.rand((B, S), generator=g) < RATE
    use_mask = selected & (torch.rand((B, S), generator=g) < 0.85)
    masked = torch.where(use_mask, torch.full_like(x, MASK), x)
    labels = torch.where(selected, x, torch.full_like(x, -100))
    opt.zero_grad(set_to_none=True)
    if sparse_head:    # the generator head on the masked positions only, as ours and the original
      h = gen.electra(input_ids=masked).last_hidden_state[selected]
      logits = gen.generator_lm_head(gen.generator_predictions(h))
      mlm_loss = torch.nn.functional.cross_entropy(logits, x[selected])
    else:
      out = gen(input_ids=masked, labels=labels)
      logits, mlm_loss = out.logits[selected], out.loss
    with torch.no_grad():
      probs = torch.softmax(logits, -1)
      sampled = torch.multinomial(probs, 1, generator=g)[:, 0]
    fake = x.clone()
    fake[selected] = sampled
    is_fake = (fake != x).float()
    d = disc(input_ids=fake, labels=is_fake)
    (mlm_loss + 50.0 * d.loss).backward()
    opt.step()
  return step


def _our_step_fn(gen, disc, ids, B, S, dtype="float32"):
  import dataclasses
  import tempfile

  import jax
  import jax.numpy as jnp
  import optax

  from models.electra import ReplacedTokenDetectionObjective, SlotMasking
  from models.hf import load_electra_pretraining
  with tempfile.TemporaryDirectory() as tmp:
    disc.save_pretrained(os.path.join(tmp, "d"))
    gen.save_pretrained(os.path.join(tmp, "g"))
    model, params = load_electra_pretraining(os.path.join(tmp, "d"), os.path.join(tmp, "g"))
  if dtype != "float32":
    model = type(model)(dataclasses.replace(model.cfg, dtype=dtype))   # the generator's config derives from it
  objective = ReplacedTokenDetectionObjective(SlotMasking(mask_id=MASK, special_ids=(0, 101, 102, 103),
                                                          vocab_size=V, random_low=999, mask_rate=RATE))
  tx = optax.adamw(1e-4)
  batch = {"tokens": jnp.asarray(ids, jnp.int32), "segment_ids": jnp.ones((B, S), jnp.int32),
           "positions": jnp.broadcast_to(jnp.arange(S), (B, S))}

  @jax.jit
  def step(p, o, batch, rng):    # the batch is an argument: as a closure constant XLA could fold the masking
    r1, r2 = jax.random.split(rng)
    b = objective.prepare(batch, r1)
    (loss, _), grads = jax.value_and_grad(lambda q: objective.loss(model.apply, q, b, r2), has_aux=True)(p)
    u, o = tx.update(grads, o, p)
    return optax.apply_updates(p, u), o, loss

  state = [jax.device_put(params), None]
  state[1] = tx.init(state[0])
  t = time.perf_counter()
  step.lower(state[0], state[1], batch, jax.random.PRNGKey(0)).compile()
  compile_s = time.perf_counter() - t
  counter = [0]

  def run():
    counter[0] += 1
    p, o, loss = step(state[0], state[1], batch, jax.random.PRNGKey(counter[0]))
    jax.block_until_ready(loss)
    state[0], state[1] = p, o
  return run, compile_s, model.cfg


def main(argv):
  del argv
  import numpy as np
  import torch

  from train.flops import measure_matmul_peak
  B, S = _BATCH.value, _SEQ.value
  peak = measure_matmul_peak()
  ids = np.random.default_rng(0).integers(999, V, (B, S))
  gen, disc = _hf_models()
  ours, compile_s, cfg = _our_step_fn(gen, disc, ids, B, S)
  sides = {"ours": ours, "hf": _hf_step_fn(gen, disc, ids, B, S),
           "hf_sparse": _hf_step_fn(gen, disc, ids, B, S, sparse_head=True)}
  if "bfloat16" in _DTYPE.value:
    sides["ours_bf16"], compile_bf16_s, _ = _our_step_fn(gen, disc, ids, B, S, "bfloat16")
  for fn in sides.values():
    fn()
  times = {k: [] for k in sides}
  for _ in range(_ROUNDS.value):
    for k, fn in sides.items():
      times[k].append(median_seconds(fn, _REPEATS.value))
  step = {k: statistics.median(v) for k, v in times.items()}
  tps = {k: B * S / v for k, v in step.items()}
  flops = cfg.flops_per_token(S, RATE)
  result = {"batch": B, "seq": S, "step_s": step, "tokens_per_s": tps, "ratio": tps["ours"] / tps["hf"],
            "ratio_vs_sparse_head": tps["ours"] / tps["hf_sparse"], "our_compile_s": compile_s,
            "train_flops_per_token": flops, "f32_peak_gflops": peak / 1e9,
            "our_mfu": flops * tps["ours"] / peak, "rounds": times, "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "load_avg_before": os.getloadavg()[0]}
  print(json.dumps(result, indent=1))
  print(f"\n| batch x seq | ours tokens/s | HF tokens/s | ratio | HF, head on masked only | ratio | our compile (s) "
        f"| our MFU (f32 peak {peak / 1e9:.0f} GFLOP/s) |\n|---|---|---|---|---|---|---|---|\n| {B} x {S} | "
        f"{tps['ours']:,.0f} | {tps['hf']:,.0f} | {tps['ours'] / tps['hf']:.2f}x | {tps['hf_sparse']:,.0f} | "
        f"{tps['ours'] / tps['hf_sparse']:.2f}x | {compile_s:.1f} | {100 * result['our_mfu']:.1f}% |")
  if "ours_bf16" in tps:
    print(f"\nbfloat16 (ours): {tps['ours_bf16']:,.0f} tokens/s, {tps['ours_bf16'] / tps['ours']:.2f}x our float32 "
          f"step, {tps['ours_bf16'] / tps['hf_sparse']:.2f}x HF head-on-masked float32 (compile {compile_bf16_s:.1f}s)")


if __name__ == "__main__":
  app.run(main)
