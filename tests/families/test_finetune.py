"""Fine-tuning: classification heads match Hugging Face, the stdlib-package task is well formed, and a
classifier initialised from a masked-LM run trains with the generic trainer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data.tasks import stdlib_packages
from models.modernbert import ModernBertForSequenceClassification, ModernBertForTokenClassification
from tests.helpers import require, tiny_config

torch = require("torch")
transformers = require("transformers")


def test_stdlib_package_task_is_balanced_enough_and_split_by_file():
  task = stdlib_packages(num_classes=8, max_chars=1024)
  assert len(task.class_names) == 8 and len(task.train) > 2000 and len(task.validation) > 100
  assert set(label for _, label in task.validation) == set(range(8))
  assert task.majority_baseline < 0.5


@pytest.mark.parametrize("kind, pooling", [("sequence", "cls"), ("sequence", "mean"), ("token", None)])
def test_classification_heads_match_hugging_face(kind, pooling, tmp_path):
  from models.hf.modernbert import modernbert_config, params_from_state_dict
  torch.manual_seed(0)
  cfg = transformers.ModernBertConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=40, global_attn_every_n_layers=2, local_attention=8,
                                      num_labels=5, classifier_pooling=pooling or "cls", pad_token_id=0)
  hf_cls = transformers.ModernBertForSequenceClassification if kind == "sequence" else \
      transformers.ModernBertForTokenClassification
  hf = hf_cls(cfg).eval()
  with torch.no_grad():
    for p in hf.parameters():
      if p.ndim == 2:
        p.normal_(0, 1.0 / np.sqrt(p.shape[1]))
  state = {k: v.numpy() for k, v in hf.state_dict().items()}
  ours_cfg = modernbert_config(cfg.to_dict())
  head = {"classifier": {"kernel": state.pop("classifier.weight").T, "bias": state.pop("classifier.bias")}}
  state["decoder.bias"] = np.zeros(61, np.float32)      # the MLM mapper's required key; unused here
  params = params_from_state_dict(ours_cfg, state)
  params.pop("decoder_bias")
  params.update(head)
  model = (ModernBertForSequenceClassification(ours_cfg, 5, pooling) if kind == "sequence" else
           ModernBertForTokenClassification(ours_cfg, 5))
  ids = np.random.default_rng(0).integers(3, 61, (3, 19))
  mask = np.ones((3, 19), np.int64)
  mask[1, 12:] = 0
  ours = np.asarray(model.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  with torch.no_grad():
    ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
  if kind == "token":
    ours, ref = ours[mask.astype(bool)], ref[mask.astype(bool)]
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
  """A 3-step masked-LM run (tests/helpers.py tiny_config), the source of both weights-only initialisations."""
  from train.loop import train
  path = str(tmp_path_factory.mktemp("mlm"))
  train(tiny_config(**{"train.num_steps": 3, "train.eval_every": 0}), path)
  return path


def test_classifier_initialised_from_a_masked_lm_run_trains(mlm_dir, tmp_path):
  from train.loop import train
  ft = tiny_config(**{"model.name": "modernbert_classifier", "data.task": "stdlib_packages",
                      "data.num_classes": 4, "data.max_doc_chars": 512, "train.num_steps": 40,
                      "train.eval_every": 40, "train.checkpoint_every": 40, "optim.lr": 3e-3,
                      "checkpoint.init_from": mlm_dir, "eval.num_batches": 4})
  ft.unlock()
  ft.model.pooling = "mean"
  metrics = train(ft, str(tmp_path / "ft"))
  task = stdlib_packages(num_classes=4, max_chars=512)
  prior = np.bincount([label for _, label in task.validation], minlength=4) / len(task.validation)
  best_constant = float(-(prior * np.log(prior)).sum())   # the loss of predicting the class prior
  assert metrics["loss"] < 0.9 * best_constant, (metrics, best_constant)
  _check_inference_and_export(ft, str(tmp_path / "ft"), task.class_names, tmp_path / "exported")


def _check_inference_and_export(config, workdir, names, out):
  """The classifier's inference mode (`--mode=decode --text=...`: label probabilities by name) and its export,
  which `pipeline("text-classification")` loads and scores exactly as we do, given the texts as typed."""
  from decode.classify import label_probabilities
  from train.hf_convert import export_hf
  from train.restore import load_trained
  from train.modes import run
  texts = ["import email.utils", "async def f():", "x = [1, 2]"]
  exp, _, params = load_trained(config, workdir)
  ours = label_probabilities(exp.family.module.apply, params, exp.vocab, texts, config.data.seq_len)
  shown = run(config, workdir, "decode", text=texts[0])[0]
  top = np.argsort(-ours[0])[:5]
  assert shown == "  " + " | ".join(f"{names[i]} {ours[0][i]:.3f}" for i in top)
  assert "wrote tokenizer files" in export_hf(workdir, str(out))
  pipe = transformers.pipeline("text-classification", model=str(out), device="cpu", top_k=None)
  for text, probs in zip(texts, ours):
    ref = {r["label"]: r["score"] for r in pipe([text])[0]}
    assert sorted(ref) == sorted(names)
    np.testing.assert_allclose([ref[n] for n in names], probs, rtol=1e-4, atol=1e-6)
  assert len({int(np.argmax(p)) for p in ours}) > 1 or np.ptp(ours) > 1e-3   # the texts are told apart


def test_weights_only_init_across_families_loads_shared_parameters(mlm_dir):
  import os

  from train import checkpoint as ckpt_lib
  from train.experiment import build_experiment
  ft = tiny_config(**{"model.name": "modernbert_classifier", "data.task": "stdlib_packages", "data.num_classes": 4,
                      "data.max_doc_chars": 512})
  ft.unlock()
  ft.model.pooling = "cls"
  exp = build_experiment(ft)
  with jax.set_mesh(exp.mesh):
    src = ckpt_lib.Checkpointer(os.path.join(mlm_dir, "checkpoints"), read_only=True)
    fresh = exp.init_state().params
    params, report = src.restore_matching_params(src.latest_step(), exp.abstract_state.params, fresh)
    mlm_params = src.restore_params(src.latest_step(), {"model": exp.abstract_state.params["model"]})
    src.close()
  # encoder and MLM head (dense, norm) loaded; the classifier (kernel, bias) fresh
  assert (len(report["loaded"]), sorted(report["fresh"])) == (16, ["classifier/bias", "classifier/kernel"])
  assert 0 < report["fresh_fraction"] < 0.1 and report["mismatched"] == []
  np.testing.assert_array_equal(np.asarray(params["classifier"]["kernel"]), np.asarray(fresh["classifier"]["kernel"]))
  for a, b in zip(jax.tree.leaves(params["model"]), jax.tree.leaves(mlm_params["model"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
