"""ELECTRA objective and training: slot masking, labels, no gradient through sampling, one shared embedding,
both backbones train in the generic loop, and a classifier fine-tunes from the discriminator."""
import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import electra as electra_configs
from models.electra import (ElectraConfig, ElectraPretrainingModel, ReplacedTokenDetectionObjective, SlotMasking,
                            max_predictions)
from models.family import init_variables, token_batch_spec
from tests.helpers import require

VOCAB, T, B = 50, 40, 6
SPECIAL = (0, 1, 2, 3)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(4, VOCAB, (B, T)).astype(np.int32)
  tokens[:, 0] = 1
  seg = np.ones((B, T), np.int32)
  seg[1, 30:] = 0                       # padding
  seg[2, 20:] = 2                       # a second packed document
  tokens[seg == 0] = 0
  tokens[2, 19] = 2
  pos = np.concatenate([np.arange(20), np.arange(20)])[None].repeat(B, 0).astype(np.int32)
  pos[seg[:, :] != 2] = np.broadcast_to(np.arange(T), (B, T))[seg != 2]
  return {"tokens": jnp.asarray(tokens), "segment_ids": jnp.asarray(seg), "positions": jnp.asarray(pos)}


MASKING = SlotMasking(mask_id=3, special_ids=SPECIAL, vocab_size=VOCAB, random_low=4, mask_rate=0.15)


def test_slot_masking_follows_the_recipe():
  batch = _batch()
  tokens, seg = np.asarray(batch["tokens"]), np.asarray(batch["segment_ids"])
  N = max_predictions(T, 0.15)
  assert N == int(0.155 * T)
  masked_frac = []
  for seed in range(20):
    m = jax.device_get(MASKING(batch["tokens"], batch["segment_ids"], jax.random.PRNGKey(seed)))
    for b in range(B):
      slots = m["slots"][b][m["selected"][b]]
      assert len(set(slots.tolist())) == len(slots)                    # without replacement
      want = int(np.clip(np.round((seg[b] > 0).sum() * 0.15), 1, N))
      assert len(slots) == want
      assert (seg[b, slots] > 0).all() and not np.isin(tokens[b, slots], SPECIAL).any()
      changed = np.flatnonzero(m["inputs"][b] != tokens[b])
      assert set(changed.tolist()) <= set(slots.tolist())             # only chosen slots change
      assert (m["inputs"][b, changed] == 3).all()                      # ELECTRA: [MASK] or unchanged, no random
      masked_frac.append((m["inputs"][b, slots] == 3).mean())
      np.testing.assert_array_equal(m["slot_targets"][b], tokens[b, m["slots"][b]])
  assert abs(np.mean(masked_frac) - 0.85) < 0.06


def _peaked_apply(peak_on_original: bool):
  """A stand-in model: the generator puts all mass on the original (or on another) token; the discriminator
  outputs 0."""
  def apply_fn(variables, tokens, seg, pos, *rest, method=None, rngs=None):
    del variables, seg, pos, rngs
    if method == "generator_logits":
      slots = rest[0]
      original = jnp.take_along_axis(_batch()["tokens"], slots, 1)
      target = original if peak_on_original else 4 + (original - 3) % (VOCAB - 4)
      return 100.0 * jax.nn.one_hot(target, VOCAB)
    return jnp.zeros(tokens.shape, jnp.float32)
  return apply_fn


@pytest.mark.parametrize("peak_on_original", [True, False])
def test_sample_equal_to_the_original_counts_as_original(peak_on_original):
  objective = ReplacedTokenDetectionObjective(MASKING)
  batch = objective.prepare(_batch(), jax.random.PRNGKey(0))
  loss, m = objective.loss(_peaked_apply(peak_on_original), None, batch, jax.random.PRNGKey(1))
  m = objective.finalize_metrics(m)
  real = float((batch["segment_ids"] > 0).sum())
  expected_frac = 0.0 if peak_on_original else float(batch["selected"].sum()) / real
  np.testing.assert_allclose(float(m["replaced_frac"]), expected_frac, rtol=1e-6)
  np.testing.assert_allclose(float(m["disc_loss"]), np.log(2), rtol=1e-6)    # logit 0 on every real token
  np.testing.assert_allclose(float(m["mlm_loss"]), 0.0 if peak_on_original else 100.0, atol=1e-4)
  np.testing.assert_allclose(float(loss), float(m["mlm_loss"]) + 50 * np.log(2), rtol=1e-5)
  np.testing.assert_allclose(float(m["disc_accuracy_original"]), 1.0, rtol=1e-6)   # logit 0 -> "original"


@pytest.fixture(scope="module")
def tiny_joint():
  cfg = ElectraConfig(vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=64, max_position_embeddings=T)
  model = ElectraPretrainingModel(cfg)
  init = jax.jit(lambda r: init_variables(model, ReplacedTokenDetectionObjective(MASKING), token_batch_spec(T), r))
  params = init(jax.random.PRNGKey(0))["params"]     # jitted: 2.4x faster than eager init on 2 cores
  return model, flax.linen.unbox(params)


def _grads(model, params, gen_weight, disc_weight):
  objective = ReplacedTokenDetectionObjective(MASKING, gen_weight=gen_weight, disc_weight=disc_weight)
  batch = objective.prepare(_batch(), jax.random.PRNGKey(0))
  return jax.grad(lambda p: objective.loss(model.apply, p, batch, jax.random.PRNGKey(1))[0])(params)


_jit_grads = jax.jit(_grads, static_argnums=0)   # one compilation for the three weightings (traced weights)


def _norm(tree):
  return float(jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(tree))))


@pytest.fixture(scope="module")
def joint_grads(tiny_joint):
  """Gradients of the discriminator loss alone, the MLM loss alone and both (weights 1 and 50): three passes, since
  the gradient is linear in the loss weights."""
  model, params = tiny_joint
  return {"disc": _jit_grads(model, params, 0.0, 1.0), "mlm": _jit_grads(model, params, 1.0, 0.0),
          "all": _jit_grads(model, params, 1.0, 50.0)}


def test_no_gradient_from_the_discriminator_loss_reaches_the_generator(joint_grads):
  g_disc, g_mlm = joint_grads["disc"], joint_grads["mlm"]
  assert _norm(g_disc["generator"]) == 0.0          # exactly: sampling is outside the graph
  assert _norm(g_disc["discriminator"]) > 0 and _norm(g_mlm["generator"]) > 0
  assert _norm(g_mlm["discriminator"]) == 0.0


def test_embeddings_are_one_parameter_updated_by_both_losses(tiny_joint, joint_grads):
  model, params = tiny_joint
  flat = flax.traverse_util.flatten_dict(params)
  tables = [k for k in flat if k[-2:] == ("word_embeddings", "embedding")]
  assert tables == [("embeddings", "word_embeddings", "embedding")]      # one table in the whole state
  g_disc = jax.tree.map(lambda x: 50.0 * x, joint_grads["disc"]["embeddings"])
  g_mlm = joint_grads["mlm"]["embeddings"]
  g_all = joint_grads["all"]["embeddings"]
  for name in ("word_embeddings", "position_embeddings", "LayerNorm"):
    assert _norm(g_disc[name]) > 0 and _norm(g_mlm[name]) > 0, name
  for a, b, c in zip(jax.tree.leaves(g_all), jax.tree.leaves(g_mlm), jax.tree.leaves(g_disc)):
    np.testing.assert_allclose(a, b + c, atol=1e-5)
  # The generator's logits read the shared table: changing it changes them.
  batch = _batch()
  args = (batch["tokens"], batch["segment_ids"], batch["positions"])
  before = model.apply({"params": params}, *args, method="generator_logits")
  noise = lambda x: 0.1 * jax.random.normal(jax.random.PRNGKey(3), x.shape)  # noqa: E731
  bumped = jax.tree_util.tree_map_with_path(
      lambda p, x: x + noise(x) if "word_embeddings" in jax.tree_util.keystr(p) else x, params)
  assert float(jnp.abs(model.apply({"params": bumped}, *args, method="generator_logits") - before).max()) > 1e-3


def test_flop_model_counts_generator_and_discriminator():
  cfg = ElectraConfig(vocab_size=30522)            # ELECTRA-small discriminator
  # The spec's figure for the discriminator forward at S = 128: 20.64 MFLOP per token (N_mm 9,535,744).
  np.testing.assert_allclose(cfg.discriminator_flops_per_token(128) / 3, 2 * 9_535_744 + 4 * 12 * 128 * 256)
  g = cfg.generator()
  assert (g.hidden_size, g.num_heads, g.intermediate_size, g.num_layers) == (64, 1, 256, 12)
  assert cfg.flops_per_token(128) > cfg.discriminator_flops_per_token(128)


def _train(tmp_path, name, arg, steps=6, **overrides):
  from tests.helpers import train_losses
  from train.loop import train
  c = electra_configs.get_config(arg)
  c.unlock()
  c.train.num_steps = steps
  c.train.eval_every = c.train.checkpoint_every = steps
  for k, v in overrides.items():
    node = c
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  workdir = str(tmp_path / name)
  metrics = train(c, workdir)
  return workdir, metrics, train_losses(workdir)


@pytest.mark.parametrize("arg", ["tiny", pytest.param("tiny,modernbert", marks=pytest.mark.slow)])
def test_electra_trains_in_the_generic_loop_and_logs_both_losses(tmp_path, arg, request):
  if arg == "tiny":   # the module's pretraining run (also exported and fine-tuned below)
    workdir, metrics, losses = request.getfixturevalue("pretrained_tiny")
  else:
    workdir, metrics, losses = _train(tmp_path, arg.replace(",", "_"), arg, steps=30, **{"optim.lr": 3e-3})
  for key in ("mlm_loss", "disc_loss", "accuracy", "disc_accuracy_replaced", "disc_accuracy_original",
              "replaced_frac"):
    assert np.isfinite(metrics[key]), key
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  train_rows = [r for r in rows if r["split"] == "train"]
  assert all("disc_accuracy_replaced" in r and "mlm_loss" in r for r in train_rows)
  assert 0.0 < metrics["replaced_frac"] < 0.155
  first, last = losses[min(losses)], losses[max(losses)]
  assert last < 0.8 * first, losses


@pytest.fixture(scope="module")
def pretrained_tiny(tmp_path_factory):
  """(workdir, final metrics, train losses) of a 30-step tiny ELECTRA pretraining run."""
  return _train(tmp_path_factory.mktemp("electra"), "pre", "tiny", steps=30, **{"optim.lr": 3e-3})


def test_pretraining_run_exports_to_hugging_face(pretrained_tiny, tmp_path):
  transformers = require("transformers")
  torch = require("torch")
  from train.hf_convert import export_hf
  from train.restore import load_trained
  export_hf(pretrained_tiny[0], str(tmp_path / "hf"))
  exp, _, params = load_trained(electra_configs.get_config("tiny"), pretrained_tiny[0])
  batch = _batch()
  tokens = np.asarray(batch["tokens"]) % exp.vocab.size
  args = (jnp.asarray(tokens), jnp.ones_like(batch["segment_ids"]), jnp.broadcast_to(jnp.arange(T), (B, T)))
  ours_d = np.asarray(exp.family.module.apply({"params": params}, *args, method="discriminator_logits"))
  ours_g = np.asarray(exp.family.module.apply({"params": params}, *args, method="generator_logits"))
  with torch.no_grad():
    d = transformers.ElectraForPreTraining.from_pretrained(str(tmp_path / "hf" / "discriminator")).eval()
    g = transformers.ElectraForMaskedLM.from_pretrained(str(tmp_path / "hf" / "generator")).eval()
    ref_d = d(input_ids=torch.tensor(tokens)).logits.numpy()
    ref_g = g(input_ids=torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(ours_d, ref_d, atol=1e-4 * np.abs(ref_d).max())
  np.testing.assert_allclose(ours_g, ref_g, atol=1e-4 * np.abs(ref_g).max())


def test_classifier_fine_tunes_from_the_discriminator(pretrained_tiny):
  import os as _os

  from configs import electra_finetune
  from train import checkpoint as ckpt_lib
  from train.experiment import build_experiment
  pre_dir = pretrained_tiny[0]
  ft = electra_finetune.get_config("tiny")
  ft.unlock()
  ft.data.num_classes = 4
  ft.data.max_doc_chars = 512
  exp = build_experiment(ft)
  with jax.set_mesh(exp.mesh):
    src = ckpt_lib.Checkpointer(_os.path.join(pre_dir, "checkpoints"), read_only=True)
    fresh = exp.init_state().params
    params, report = src.restore_matching_params(src.latest_step(), exp.abstract_state.params, fresh)
    saved = src.restore_params(src.latest_step(), {k: exp.abstract_state.params[k]
                                                   for k in ("embeddings", "discriminator")})
    src.close()
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves({k: params[k] for k in ("embeddings", "discriminator")})):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  n_classifier = len(jax.tree.leaves(params["classifier_dense"])) + len(jax.tree.leaves(params["classifier_out_proj"]))
  assert len(report["fresh"]) == n_classifier and len(report["loaded"]) == len(jax.tree.leaves(params)) - n_classifier
