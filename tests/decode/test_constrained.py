"""decode/constrained.py: the token DFA against Python's `re` on the texts it spells, AWRS against enumeration of
every Plackett-Luce ordering (exact constrained law, unbiased normaliser), and the SMC driver's normaliser
against the exact probability that a small causal LM's text matches (enumerated with full forward passes)."""
import itertools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decode import constrained
from decode.constrained import plackett_luce_probability


def test_token_dfa_accepts_exactly_the_texts_the_expression_matches():
  """Every token sequence of length <= 3 over the letters and digits of a byte vocabulary, and multi-byte tokens
  of a character vocabulary: DFA acceptance equals re.fullmatch on the text; EOS is allowed exactly at a match."""
  from data.vocab import ByteVocabulary, CharVocabulary
  pattern = r"[ab]+(-[0-9]{1,2})?"
  for vocab, alphabet in ((ByteVocabulary(), "ab-0c9"), (CharVocabulary("ab-09xé"), "ab-09xé")):
    dfa = constrained.compile_regex(pattern, vocab)
    ids = [vocab.encode(c)[0] for c in alphabet]
    matched = 0
    for n in (1, 2, 3):
      for seq in itertools.product(ids, repeat=n):
        want = re.fullmatch(pattern, vocab.decode(seq)) is not None
        assert dfa.accepts(seq) == want, vocab.decode(seq)
        assert dfa.accepts(list(seq) + [vocab.sep_id]) == want
        matched += want
    assert 0 < matched < sum(len(ids) ** n for n in (1, 2, 3))
  with pytest.raises(ValueError, match=r"matches no text"):
    constrained.compile_regex(r"a[^\s\S]", ByteVocabulary())


def test_awrs_returns_the_constrained_law_and_an_unbiased_normaliser_over_every_ordering():
  """V <= 6, every permutation with its Plackett-Luce probability (zeros and ties of p included): the token is
  distributed as p c / Z, E[exp(w) 1{x = a}] = p(a) c(a) (so E[exp(w)] = Z), and an all-rejected constraint gives
  -inf; the walk reads the constraint fewer times than masking on average."""
  rng = np.random.default_rng(0)
  run = jax.jit(jax.vmap(constrained.awrs_from_order, in_axes=(None, None, 0)))
  worst_law = worst_w = 0.0
  calls = []
  for trial in range(40):
    V = int(rng.integers(2, 7))
    p = rng.dirichlet(np.full(V, rng.choice([0.3, 1.0, 3.0])))
    if trial % 5 == 0:
      p[rng.integers(V)] = 0.0
      p /= p.sum()
    c = rng.random(V) < 0.5
    orders = np.array(list(itertools.permutations(range(V))), np.int32)
    with np.errstate(divide="ignore"):
      tok, logw, n = jax.device_get(run(jnp.log(jnp.asarray(p, jnp.float32)), jnp.asarray(c), jnp.asarray(orders)))
    prob = np.array([plackett_luce_probability(o, p) for o in orders])
    if not (c & (p > 0)).any():
      assert np.all(logw == -np.inf)
      continue
    law, weighted = np.zeros(V), np.zeros(V)
    np.add.at(law, tok, prob * np.isfinite(logw))
    np.add.at(weighted, tok, prob * np.exp(logw))
    z = float((p * c).sum())
    worst_law = max(worst_law, np.abs(law - p * c / z).max())
    worst_w = max(worst_w, np.abs(weighted - p * c).max())
    calls.append(float((prob * n).sum()) / V)
  assert worst_law < 1e-6 and worst_w < 1e-6, (worst_law, worst_w)
  assert np.mean(calls) < 0.9


def _table_model(alpha: np.ndarray, seed: int):
  """A token LM given as a table: p(. | prefix) drawn per prefix from Dirichlet(alpha)."""
  from decode.bytes import PrefixModel
  table = {}

  def law(prefix):
    if prefix not in table:
      table[prefix] = np.log(np.random.default_rng([seed, *prefix]).dirichlet(alpha))
    return table[prefix]
  return PrefixModel(lambda prefixes: np.stack([law(tuple(p)) for p in prefixes])), law


@pytest.mark.parametrize("method", ["awrs", "mask"])
def test_smc_normaliser_is_unbiased_and_every_finished_text_matches(method):
  """SMC over AWRS (or masking) particles on a token LM over a character vocabulary ({a, b} and the specials):
  the mean over runs of the normaliser estimate equals the exact probability that the LM's text matches
  "a(ba)*b?" and ends within the token budget (enumerated over the table), within four standard errors; every
  particle that ended with EOS spells a match."""
  from data.vocab import CharVocabulary
  vocab = CharVocabulary("ab")
  pattern, budget = "a(ba)*b?", 5
  dfa = constrained.compile_regex(pattern, vocab)
  alpha = np.full(vocab.size, 0.05)
  alpha[[vocab.sep_id, *vocab.encode("ab")]] = 1.0   # most mass on a, b and EOS; some on the specials
  model, law = _table_model(alpha, 7)
  z = 0.0
  for n in range(1, budget):
    for text in map("".join, itertools.product("ab", repeat=n)):
      if re.fullmatch(pattern, text):
        ids = vocab.encode(text) + [vocab.sep_id]
        z += math.exp(sum(law(tuple(ids[:k]))[t] for k, t in enumerate(ids)))
  estimates = []
  for seed in range(150):
    out = constrained.constrained_generate(model, dfa, num_particles=4, max_new_tokens=budget, method=method,
                                           seed=seed)
    estimates.append(math.exp(out["log_z"]))
    for toks in out["tokens"]:
      if toks and toks[-1] == vocab.sep_id:
        assert re.fullmatch(pattern, vocab.decode(toks[:-1])), vocab.decode(toks)
  mean, se = float(np.mean(estimates)), float(np.std(estimates) / np.sqrt(len(estimates)))
  assert abs(mean - z) < 4 * se, (mean, z, se)
  assert se < 0.25 * z and 0.01 < z < 0.9, (se, z)


def test_decode_hook_continues_with_text_the_expression_matches():
  """decode.regex on a causal LM (untrained, bytes): every continuation, over seeds, matches the expression
  whole (the fixed-length expression forces the end); an expression no text matches is one line at build."""
  from data.vocab import ByteVocabulary
  from decode.text import text_decoder
  from models.causal_lm import CausalLm, CausalLmConfig
  vocab = ByteVocabulary()
  module = CausalLm(CausalLmConfig(vocab_size=vocab.size, hidden_size=16, num_layers=1, num_heads=2,
                                   intermediate_size=32, max_position_embeddings=32))
  params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
  for seed in range(3):
    decode = text_decoder(module, vocab, max_new_tokens=6, sampler=None, seed=seed, regex=r"[0-9]{2}(px|em)",
                          particles=4)
    [out] = decode(params, ["width: "])
    assert out.startswith("width: ") and re.fullmatch(r"[0-9]{2}(px|em)", out[len("width: "):]), out
  with pytest.raises(ValueError, match="matches no text"):
    text_decoder(module, vocab, max_new_tokens=6, sampler=None, seed=0, regex=r"a[^\s\S]")
