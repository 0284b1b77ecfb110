"""AriEL volume coding (decode/ariel.py) against exact oracles (ariel.md §6.1, tests A1-A6 and the §7 example):
a random prefix-tree LM and the fixture grammar, both enumerated (data/sentences.py), textbook arithmetic coding
in exact rationals, and our causal LM (cached coder = uncached forward pass; a GPT-2 checkpoint through models.hf)."""
import fractions
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from data import sentences as S
from decode import ariel

D_VALUES = (1, 2, 3, 16)


@pytest.fixture(scope="module")
def tree():
  return S.prefix_tree(0)   # 1,419 sentences of 1-6 words + EOS (V = 6)


def _log_p(language, tokens):
  return np.log(language.probs[[language.index[s] for s in ariel.sentences(tokens, language.eos)]])


def _constant_lm(p, eos):
  return ariel.oracle(S.OracleLM(len(p), -1, eos, lambda prefix: np.asarray(p, float)))


def test_worked_example_of_section_7():
  """p = (a 0.5, b 0.3, EOS 0.2), sentence `a b EOS`: the spec's boxes, centre, closed form and boundary."""
  lm = _constant_lm([0.5, 0.3, 0.2], eos=2)
  z, (lo, hi) = ariel.encode(lm, None, [[0, 1, 2]], 1)
  np.testing.assert_allclose([lo[0, 0], hi[0, 0], z[0, 0]], [0.37, 0.40, 0.385], rtol=0, atol=1e-15)
  z, (lo, hi) = ariel.encode(lm, None, [[0, 1, 2]], 2)
  np.testing.assert_allclose(lo[0], [0.40, 0.5], atol=1e-15)
  np.testing.assert_allclose(hi[0], [0.50, 0.8], atol=1e-15)
  np.testing.assert_allclose(z[0], [0.45, 0.65], atol=1e-15)
  assert z[0, 0] == pytest.approx(0 + 0.8 * 0.5 + 0.5 * 0.2 / 2, abs=1e-15)   # closed form, dimension 0
  assert np.prod(hi - lo) == pytest.approx(0.03, abs=1e-15)
  out = ariel.decode(lm, None, [[0.399999], [0.4], [0.370001], [0.385]], 6)
  assert ariel.sentences(out, 2) == [(0, 1, 2), (0, 2), (0, 1, 2), (0, 1, 2)]


@pytest.mark.parametrize("d", D_VALUES)
def test_A1_A2_round_trip_and_tiling_on_the_prefix_tree(tree, d):
  """Every sentence decodes back; box volumes are the exact sentence probabilities (to the float64 rounding of
  the bounds, ~1e-16 absolute) and sum to 1; sampled pairs of boxes are disjoint."""
  tokens = tree.padded()
  z, (lo, hi) = ariel.encode(ariel.oracle(tree.oracle()), None, tokens, d)
  out = ariel.decode(ariel.oracle(tree.oracle()), None, z, tokens.shape[1])
  assert (out == tokens).all(axis=1).sum() == len(tokens)
  vol = np.prod(hi - lo, axis=1)
  np.testing.assert_allclose(vol, tree.probs, rtol=1e-9, atol=1e-15)   # a side's bounds are rounded to ~1e-16
  assert abs(vol.sum() - 1) < 1e-9
  r = np.random.default_rng(d)
  a, b = r.integers(len(tokens), size=(2, 5000))
  a, b = a[a != b], b[a != b]
  apart = (hi[a] <= lo[b]) | (hi[b] <= lo[a])                  # separated along some dimension
  assert apart.any(axis=1).all()
  assert (lo >= 0).all() and (hi <= 1).all()


@pytest.mark.parametrize("d", D_VALUES)
def test_A1_round_trip_of_every_sentence_of_the_fixture_grammar(d):
  language = S.house_questions()
  tokens = language.padded()
  lm = ariel.oracle(language.oracle())
  z, (lo, hi) = ariel.encode(lm, None, tokens, d)
  assert (ariel.decode(lm, None, z, tokens.shape[1]) == tokens).all()
  np.testing.assert_allclose(np.prod(hi - lo, axis=1), language.probs, rtol=1e-9, atol=1e-15)


def _tv(counts, p):
  return 0.5 * np.abs(counts / counts.sum() - p).sum()


@pytest.mark.parametrize("d", (1, 3))
def test_A3_uniform_points_decode_to_lm_samples(tree, d):
  """20k uniform points: all in the language; TV to P(s) within 1.2x that of 20k exact samples; chi-square on the
  50 most likely sentences. Negative control: non-uniform points (z^2) fail the chi-square."""
  n = 20_000
  lm = ariel.oracle(tree.oracle())
  r = np.random.default_rng(100 + d)

  def counts(points):
    idx = [tree.index.get(s, -1) for s in ariel.sentences(ariel.decode(lm, None, points, 7), tree.eos)]
    assert min(idx) >= 0, "a decoded sentence is outside the language"
    return np.bincount(idx, minlength=len(tree.sentences)).astype(float)

  c = counts(r.random((n, d)))
  exact = np.bincount(r.choice(len(tree.probs), n, p=tree.probs), minlength=len(tree.probs)).astype(float)
  assert _tv(c, tree.probs) <= 1.2 * _tv(exact, tree.probs)
  top = np.argsort(-tree.probs)[:50]

  def chi2_p(cnt):
    expected = np.append(tree.probs[top], 1 - tree.probs[top].sum()) * n
    observed = np.append(cnt[top], n - cnt[top].sum())
    return stats.chisquare(observed, expected).pvalue
  assert chi2_p(c) > 1e-3
  assert chi2_p(counts(r.random((n, d)) ** 2)) < 1e-6


def _textbook_interval(probs_fn, sentence):
  """Arithmetic coding in exact rationals: [low, low + width) of the sentence."""
  low, width = fractions.Fraction(0), fractions.Fraction(1)
  for t, tok in enumerate(sentence):
    p = [fractions.Fraction(float(x)) for x in probs_fn(tuple(sentence[:t]))]
    total = sum(p)
    low += width * sum(p[:tok]) / total
    width *= p[tok] / total
  return low, low + width


def test_A4_dimension_cycling_and_d1_is_textbook_arithmetic_coding(tree):
  """d = 1 matches exact-rational arithmetic coding; with d = 3 token t moves only dimension t mod 3, whose side
  is the product of that dimension's token probabilities."""
  lm = ariel.oracle(tree.oracle())
  pick = np.random.default_rng(0).choice(len(tree.sentences), 40, replace=False)
  tokens = tree.padded()[pick]
  _, (lo, hi) = ariel.encode(lm, None, tokens, 1)
  for i, k in enumerate(pick):
    a, b = _textbook_interval(tree.next_probs, tree.sentences[k])
    assert abs(lo[i, 0] - float(a)) < 1e-13 and abs(hi[i, 0] - float(b)) < 1e-13
  _, (lo, hi) = ariel.encode(lm, None, tokens, 3)
  for i, k in enumerate(pick):
    s = tree.sentences[k]
    p_t = [tree.next_probs(s[:t])[s[t]] for t in range(len(s))]
    for j in range(3):
      np.testing.assert_allclose(hi[i, j] - lo[i, j], np.prod(p_t[j::3]), rtol=1e-9, atol=1e-15)
      if j >= len(s):
        assert (lo[i, j], hi[i, j]) == (0.0, 1.0)


def _forced_long(seed):
  o = S.prefix_tree_oracle(seed, min_len=30, maxlen=40)
  samples = o.sample(np.random.default_rng(seed), 300)
  tokens = np.zeros((300, max(map(len, samples))), np.int32)
  for i, s in enumerate(samples):
    tokens[i, :len(s)] = s
  return o, tokens


def test_A5_precision_table_and_no_silent_loss():
  """300 sentences of 31-41 tokens: float32 with d = 1 loses some; float32 with d >= 4 and float64 recover all
  (the reason the coder defaults to float64). Every lost sentence is flagged by encode (a warning with the count,
  `representable` per sentence), and every flagged one is lost: the flag is the round trip's outcome."""
  o, tokens = _forced_long(0)
  lm = ariel.oracle(o)
  recovered = {}
  for dtype in (np.float32, np.float64):
    for d in (1, 4, 16):
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z, (lo, hi) = ariel.encode(lm, None, tokens, d, dtype=dtype)
      ok = (ariel.decode(lm, None, z, tokens.shape[1], dtype=dtype) == tokens).all(axis=1)
      flagged = ~ariel.representable(z, lo, hi)
      np.testing.assert_array_equal(flagged, ~ok)
      lines = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
      assert lines == ([] if ok.all() else [lines[0]])
      if not ok.all():
        assert lines[0].startswith(f"AriEL encode: {int((~ok).sum())} of 300 sentences (rows ")
      recovered[np.dtype(dtype).name, d] = int(ok.sum())
  assert recovered.pop(("float32", 1)) < 300
  assert set(recovered.values()) == {300}, recovered


def test_A6_zero_probability_tokens_are_never_decoded():
  """Tokens of zero mass at the ends and in the middle, an unnormalised distribution (sum < 1) and points on
  every boundary, at 1 - eps and beyond the cube: only tokens of positive mass come out."""
  p = [0.0, 0.25, 0.0, 0.0, 0.5, 0.24999, 0.0]
  lm = _constant_lm(p, eos=5)
  edges = np.concatenate([[0.0], np.cumsum(p)])
  pts = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 1), [1 - 1e-12, 1.0, 1.5, -0.2]])
  for dtype in (np.float32, np.float64):
    out = ariel.decode(lm, None, pts[:, None], 8, dtype=dtype)
    assert set(np.unique(out)) <= {1, 4, 5}


def test_bad_input_is_one_line():
  lm = _constant_lm([0.5, 0.5], eos=1)
  with pytest.raises(ValueError, match="row 1 has no EOS"):
    ariel.encode(lm, None, [[0, 1], [0, 0]], 2)
  with pytest.raises(ValueError, match="dtype=float16"):
    ariel.encode(lm, None, [[0, 1]], 2, dtype=np.float16)
  with pytest.raises(ValueError, match="points \\[B, D\\]"):
    ariel.decode(lm, None, [0.5], 4)


def _counting(lm):
  """The same LM with a host counter of executed steps."""
  calls = [0]

  def tick():
    calls[0] += 1

  def step(params, state, prefix, t):
    jax.debug.callback(tick, ordered=True)
    return lm.step(params, state, prefix, t)
  return ariel.CodingLM(lm.vocab_size, lm.bos, lm.eos, lm.init, step), calls


@pytest.fixture(scope="module")
def tiny_lm():
  from models.causal_lm import CausalLm, CausalLmConfig
  cfg = CausalLmConfig(vocab_size=42, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       max_position_embeddings=16)
  module = CausalLm(cfg)
  params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 12), jnp.int32))["params"]
  return module, params


def test_causal_lm_one_call_per_position_and_cached_equals_uncached(tiny_lm):
  """256 grammar sentences: encode and decode make one batched LM call per position (11), round-trip exactly,
  and the box volumes equal the probabilities of the uncached forward pass."""
  module, params = tiny_lm
  language = S.house_questions()
  tokens = language.padded()[np.random.default_rng(1).choice(len(language.sentences), 256, replace=False)]
  lm, calls = _counting(ariel.causal_lm(module, bos=1, eos=2))
  z, (lo, hi) = ariel.encode(lm, params, tokens, 16)
  assert calls[0] == tokens.shape[1] == 11
  out = ariel.decode(lm, params, z, 11)
  assert calls[0] == 22
  assert (out == tokens).all()
  inputs = np.concatenate([np.ones((256, 1), np.int32), tokens[:, :-1]], axis=1)
  logp = np.asarray(jax.nn.log_softmax(module.apply({"params": params}, jnp.asarray(inputs)), axis=-1))
  logp = np.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
  real = np.cumsum(tokens == 2, axis=1) - (tokens == 2) == 0      # up to and including EOS
  np.testing.assert_allclose(np.log(np.prod(hi - lo, axis=1)), (logp * real).sum(1), rtol=0, atol=2e-5)


def test_round_trip_around_a_gpt2_checkpoint(tmp_path):
  """A transformers GPT-2 checkpoint loaded through models.hf: round trip, and volumes = the torch model's
  sentence probabilities."""
  import torch
  import transformers
  from models.hf import load_gpt2
  torch.manual_seed(0)
  hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=42, n_positions=16, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
      attn_pdrop=0.0)).eval()
  hf.save_pretrained(tmp_path, safe_serialization=True)
  module, params = load_gpt2(str(tmp_path))
  language = S.house_questions()
  tokens = language.padded()[::97]
  lm = ariel.causal_lm(module, bos=1, eos=2)
  z, (lo, hi) = ariel.encode(lm, params, tokens, 4)
  assert (ariel.decode(lm, params, z, 11) == tokens).all()
  inputs = torch.tensor(np.concatenate([np.ones((len(tokens), 1)), tokens], axis=1), dtype=torch.long)
  with torch.no_grad():
    logp = torch.log_softmax(hf(inputs).logits.double(), -1)[:, :-1].gather(-1, inputs[:, 1:, None])[..., 0]
  real = np.cumsum(tokens == 2, axis=1) - (tokens == 2) == 0
  np.testing.assert_allclose(np.log(np.prod(hi - lo, axis=1)), (logp.numpy() * real).sum(1), atol=5e-5)


def test_eval_analysis_codes_the_held_out_split_exactly():
  """configs/ariel.py's `eval.analyses=("ariel",)` (what --mode=eval runs): around any LM, here an untrained one,
  every held-out sentence round-trips; the samples' fractions are consistent; a wrong corpus is one line."""
  import flax.linen as nn

  from configs import ariel as ariel_config
  from configs.families import build
  from data.vocab import SymbolVocabulary
  config = ariel_config.get_config("tiny")
  family = build(config, SymbolVocabulary(38))
  [ev] = family.evals
  out = ev.fn(nn.unbox(jax.jit(family.init_variables)(jax.random.PRNGKey(0)))["params"])
  assert out["reconstruction_held_out"] == 1.0 and out["d"] == 16
  s = out["samples"]
  assert 0 <= s["novel"] <= s["valid_unique"] <= min(s["valid"], s["unique"]) <= 1
  config.unlock()
  config.data.corpus = "synthetic:pcfg"
  with pytest.raises(ValueError, match="eval.analyses 'ariel'.*house_questions"):
    build(config, SymbolVocabulary(38))
