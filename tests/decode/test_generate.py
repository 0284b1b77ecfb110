"""Generation: greedy equals Hugging Face greedy on the same GPT-2 weights; ragged batches equal one-by-one
generation; EOS ends a row; sampled first tokens follow the model's distribution."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from decode.generate import generate
from decode.sampling import SamplerConfig
from models.hf import load_gpt2
from tests.helpers import require

torch = require("torch")
transformers = require("transformers")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
  torch.manual_seed(0)
  cfg = transformers.GPT2Config(vocab_size=53, n_positions=64, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                                embd_pdrop=0.0, attn_pdrop=0.0, eos_token_id=52, bos_token_id=52)
  hf = transformers.GPT2LMHeadModel(cfg).eval()
  with torch.no_grad():
    for name, p in hf.named_parameters():
      if "ln" not in name:
        p.normal_(0, 1.0 / np.sqrt(p.shape[0]) if p.ndim == 2 else 0.5)
  path = str(tmp_path_factory.mktemp("gpt2"))
  hf.save_pretrained(path)
  model, params = load_gpt2(path)
  return hf, model, params


def _gen(model, params, prompts, n, sampler=None, eos=None, key=0):
  P = max(len(p) for p in prompts)
  arr = np.zeros((len(prompts), P), np.int32)
  for i, p in enumerate(prompts):
    arr[i, :len(p)] = p
  toks, lengths = generate(model.apply, model.init_cache, params, jnp.asarray(arr),
                           jnp.asarray([len(p) for p in prompts], jnp.int32), jax.random.PRNGKey(key),
                           max_new_tokens=n, sampler=sampler, eos_id=eos)
  toks, lengths = np.asarray(toks), np.asarray(lengths)
  return [toks[i, :lengths[i]].tolist() for i in range(len(prompts))]


def test_greedy_matches_hugging_face_generate(gpt2):
  hf, model, params = gpt2
  prompt = [5, 17, 3, 40, 41]
  ours = _gen(model, params, [prompt], 20)[0]
  with torch.no_grad():
    ref = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20, min_new_tokens=20,
                      pad_token_id=0, eos_token_id=None)[0].tolist()
  assert ours == ref


def test_ragged_batch_equals_one_by_one(gpt2):
  _, model, params = gpt2
  prompts = [[5, 17, 3, 40, 41], [9], [1, 2, 3]]
  batched = _gen(model, params, prompts, 12)
  for p, b in zip(prompts, batched):
    assert b == _gen(model, params, [p], 12)[0]
    assert b[:len(p)] == p and len(b) == len(p) + 12


def test_eos_ends_each_row(gpt2):
  _, model, params = gpt2
  prompts = [[5, 17, 3], [9, 8]]
  free = _gen(model, params, prompts, 15)
  eos = free[0][3 + 4]                          # make row 0's fifth generated token the EOS id
  stopped = _gen(model, params, prompts, 15, eos=eos)
  assert stopped[0] == free[0][:free[0].index(eos, 3) + 1]
  first_eos_1 = free[1].index(eos, 2) if eos in free[1][2:] else None
  assert stopped[1] == (free[1] if first_eos_1 is None else free[1][:first_eos_1 + 1])


def test_sampled_first_token_follows_the_model(gpt2):
  _, model, params = gpt2
  prompt = [5, 17, 3]
  logits = np.asarray(model.apply({"params": params}, jnp.asarray([prompt])))[0, -1]
  cfg = SamplerConfig(temperature=1.5)
  p = np.asarray(jax.nn.softmax(jnp.asarray(logits) / 1.5))
  draws = [_gen(model, params, [prompt] * 50, 1, sampler=cfg, key=k) for k in range(40)]
  first = np.array([row[3] for batch in draws for row in batch])
  counts = np.bincount(first, minlength=len(p))
  p = p.astype(np.float64)
  p /= p.sum()
  keep = p * len(first) >= 5
  expected, observed = p[keep] * len(first), counts[keep]
  if (~keep).any():   # pool the rare tokens into one cell
    expected, observed = np.append(expected, p[~keep].sum() * len(first)), np.append(observed, counts[~keep].sum())
  assert stats.chisquare(observed, expected).pvalue > 1e-3
