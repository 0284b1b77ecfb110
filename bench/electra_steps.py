"""The ELECTRA-small joint pretraining step on both sides, built from one random init (flag-free, so that
bench/electra_throughput.py and bench/profile_step.py can both import it).

`hf_models()` builds transformers' discriminator and 1/4 generator with shared embeddings; `hf_step_fn` is a
transformers user's step (optionally with the generator head on the masked positions only, our algorithm);
`our_step_fn` converts the same weights (models.hf) and returns the generic trainer's step on them as a no-argument
runner, its compile time, the model config and the compiled step's HLO text.
"""
import os
import time

V, MASK, RATE = 30522, 103, 0.15


def hf_models():
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


def hf_step_fn(gen, disc, ids, B, S, sparse_head=False):
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


def our_step_fn(gen, disc, ids, B, S, dtype="float32", grad_accum_steps=1, unroll=False):
  """The generic trainer's train step (train/step.py: the same code `launch.py` runs, with its metrics) on the
  converted ELECTRA model, jitted with the state donated; grad_accum_steps / unroll as train.grad_accum_steps /
  train.grad_accum_unroll."""
  import dataclasses
  import tempfile
  import types

  import jax
  import jax.numpy as jnp
  import optax

  from models.electra import ReplacedTokenDetectionObjective, SlotMasking
  from models.hf import load_electra_pretraining
  from train.state import TrainState
  from train.step import make_train_step
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
  family = types.SimpleNamespace(objective=objective, module=model)   # what make_train_step reads of a Family
  # The batch is an argument: as a closure constant XLA could fold the masking.
  step = jax.jit(make_train_step(family, tx, optax.constant_schedule(1e-4), grad_accum_steps, unroll),
                 donate_argnums=0)
  state = [TrainState(step=jnp.zeros((), jnp.int32), params=jax.device_put(params), opt_state=tx.init(params),
                      rng=jax.random.PRNGKey(0))]
  t = time.perf_counter()
  compiled = step.lower(state[0], batch).compile()
  compile_s = time.perf_counter() - t

  def run():
    state[0], metrics = compiled(state[0], batch)
    jax.block_until_ready(metrics["loss"])
  return run, compile_s, model.cfg, compiled.as_text()
