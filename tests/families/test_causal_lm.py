"""Causal LM: logit parity with Hugging Face GPT-2 both ways, cached = uncached decoding, packing isolation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.causal_lm import CausalLm, CausalLmConfig
from models.hf import load_gpt2, save_gpt2
from tests.helpers import require

torch = require("torch")
transformers = require("transformers")

HF_CONFIGS = [dict(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4),
              dict(vocab_size=131, n_positions=40, n_embd=48, n_layer=3, n_head=3, n_inner=80,
                   activation_function="gelu", layer_norm_epsilon=1e-6)]


def _hf_model(kwargs, seed):
  torch.manual_seed(seed)
  cfg = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **kwargs)
  model = transformers.GPT2LMHeadModel(cfg).eval()
  with torch.no_grad():   # unit-scale weights: with 0.02 the parity check would hide mapping mistakes
    for name, p in model.named_parameters():
      if "ln" not in name:
        p.normal_(0, 1.0 / np.sqrt(p.shape[0]) if p.ndim == 2 else 0.5)
  return model


@pytest.fixture(scope="module", params=range(len(HF_CONFIGS)))
def converted(request, tmp_path_factory):
  hf = _hf_model(HF_CONFIGS[request.param], request.param)
  path = str(tmp_path_factory.mktemp("gpt2"))
  hf.save_pretrained(path, safe_serialization=True)
  model, params = load_gpt2(path)
  return hf, model, params, tmp_path_factory


def _hf_logits(hf, tokens, mask=None):
  with torch.no_grad():
    out = hf(torch.tensor(np.asarray(tokens)), attention_mask=None if mask is None else torch.tensor(mask))
  return out.logits.numpy()


def test_logits_match_hugging_face(converted):
  hf, model, params, _ = converted
  tokens = np.random.default_rng(0).integers(0, model.cfg.vocab_size, (3, 23))
  ours = np.asarray(model.apply({"params": params}, jnp.asarray(tokens)))
  np.testing.assert_allclose(ours, _hf_logits(hf, tokens), atol=1e-4, rtol=0)
  assert np.abs(ours).max() > 1.0   # unit-scale weights: the logits are not trivially small


def test_saved_checkpoint_reproduces_our_logits_in_hugging_face(converted):
  _, model, params, factory = converted
  params = jax.tree.map(lambda p: p + 0.01 * np.sign(p), params)   # something HF has never seen
  path = str(factory.mktemp("saved"))
  save_gpt2(model, params, path)
  hf = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
  tokens = np.random.default_rng(1).integers(0, model.cfg.vocab_size, (2, 17))
  np.testing.assert_allclose(np.asarray(model.apply({"params": params}, jnp.asarray(tokens))),
                             _hf_logits(hf, tokens), atol=1e-4, rtol=0)
  _, again = load_gpt2(path)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
    np.testing.assert_array_equal(np.asarray(a, np.float32), b)


@pytest.mark.parametrize("style", ["gpt2", "modern"])
def test_cached_decoding_equals_the_full_forward(style):
  cfg = CausalLmConfig(vocab_size=61, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                       max_position_embeddings=32, style=style)
  model = CausalLm(cfg)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  params = jax.tree.map(lambda p: p.unbox() if hasattr(p, "unbox") else p, params,
                        is_leaf=lambda p: hasattr(p, "unbox"))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 12), 0, 61)
  full = model.apply({"params": params}, tokens)
  cache = model.init_cache(2, 16)
  logits, cache = model.apply({"params": params}, tokens[:, :5], cache=cache)   # prefill 5
  steps = [logits]
  for t in range(5, 12):
    logits, cache = model.apply({"params": params}, tokens[:, t:t + 1], cache=cache)
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5, rtol=0)
  assert cache.lengths.tolist() == [12, 12]


def test_packed_documents_do_not_see_each_other():
  cfg = CausalLmConfig(vocab_size=61, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                       max_position_embeddings=32, style="modern")
  model = CausalLm(cfg)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))
  a, b = jnp.arange(5, 12)[None], jnp.arange(20, 29)[None]
  packed = jnp.concatenate([a, b, jnp.zeros((1, 4), jnp.int32)], 1)
  seg = jnp.array([[1] * 7 + [2] * 9 + [0] * 4])
  pos = jnp.array([list(range(7)) + list(range(9)) + [0] * 4])
  apply = jax.jit(lambda t, s, p: model.apply(params, t, s, p))   # one shape, one compilation
  out = apply(packed, seg, pos)

  def alone(doc):   # the document alone at the start of a row, the rest padding
    n = doc.shape[1]
    row = jnp.zeros((1, 20), jnp.int32).at[:, :n].set(doc)
    return apply(row, (jnp.arange(20) < n).astype(jnp.int32)[None], jnp.arange(20)[None])[0, :n]
  np.testing.assert_allclose(out[0, 7:16], alone(b), atol=1e-5)
  np.testing.assert_allclose(out[0, :7], alone(a), atol=1e-5)


@pytest.mark.parametrize("arg", [None, pytest.param("modern", marks=pytest.mark.slow)])
def test_causal_lm_trains_with_the_generic_trainer_and_generates(arg, tmp_path):
  from tests.helpers import tiny_causal_config
  from train.modes import run
  from train.loop import train
  c = tiny_causal_config(arg, seq_len=32, num_steps=30)
  c.eval.num_batches = 2
  c.decode.max_new_tokens = 8
  wd = str(tmp_path)
  metrics = train(c, wd)
  assert metrics["loss"] < 0.75 * np.log(260)       # well below uniform over bytes after 30 steps
  outputs = run(c, wd, "decode", text="import o")
  assert outputs[0].startswith("import o") and len(outputs[0]) > len("import o")


def test_family_evaluations_run_in_training_on_their_cadence_and_equal_the_eval_modes(tmp_path):
  """Family.evals (eval.analyses, declared like big_vision's evaluators): the training loop runs each every
  eval.analyses_every steps and at the last step, writing analysis.jsonl; --mode=eval on the final checkpoint gives
  the same values as the loop's last-step record (one function, one set of parameters)."""
  import json
  import os

  from tests.helpers import tiny_causal_config
  from train.loop import train
  from train.modes import run
  c = tiny_causal_config(seq_len=32, num_steps=6)
  c.train.eval_every = c.train.checkpoint_every = 3
  c.eval.num_batches = 1
  c.eval.analyses, c.eval.analyses_every, c.eval.num_sequences, c.eval.num_keys = ("positions",), 4, 8, 1
  c.decode.prompts = ()
  c.lock()
  wd = str(tmp_path)
  train(c, wd)
  with open(os.path.join(wd, "analysis.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [4, 6]                   # its cadence, then the last step
  assert records[0]["positions"]["mean"] != records[1]["positions"]["mean"]   # each on that step's parameters
  evaluated = run(c, wd, "eval")["analyses"]
  assert evaluated["step"] == 6 and evaluated["positions"] == records[1]["positions"]
