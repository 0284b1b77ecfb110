"""Synthetic languages, the substitution cipher, the symbol and character vocabularies, and the symbolic-episode
scorer, against brute force: the fixture grammar's exact sentence count, a Markov chain's NLL under its own
transition matrix, a rule solver scoring 100% on the episodes and a wrong rule scoring less."""
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from data import grammar, synthetic
from data.cipher import encipher
from data.sources import language_source
from data.vocab import CharVocabulary, SymbolVocabulary


def _expand(symbol):
  if symbol.startswith("'"):
    return [[symbol[1:-1]]]
  out = []
  for alt in grammar.GRAMMAR[symbol]:
    for parts in itertools.product(*[_expand(s) for s in alt]):
      out.append([w for p in parts for w in p])
  return out


def test_fixture_grammar_has_the_specs_8624_sentences_over_38_words():
  sentences = _expand("S")
  assert len(sentences) == 8624 and len({" ".join(s) for s in sentences}) == 8624   # ariel.md §5.1
  assert len(grammar.grammar_words()) == 38
  assert {len(s) for s in sentences} == set(range(5, 11))
  lang = synthetic.parse("synthetic:pcfg", 38)
  words = grammar.grammar_words()
  text = " ".join(words[i] for i in lang.sample(np.random.default_rng(0), 400))
  valid = {" ".join(s) for s in sentences}
  for sentence in text.split("?")[1:-1]:         # whole sentences between the first and the last '?'
    assert sentence.strip() + " ?" in valid


def test_markov_language_is_deterministic_and_its_nll_is_the_entropy_rate():
  lang = synthetic.parse("synthetic:markov:successors=2,seed=0", 16)
  again = synthetic.parse("synthetic:markov:successors=2,seed=0", 16)
  np.testing.assert_array_equal(lang.transitions, again.transitions)
  assert ((lang.transitions > 0).sum(axis=1) == 2).all()
  assert not np.array_equal(lang.transitions, synthetic.parse("synthetic:markov:seed=1", 16).transitions)
  rows = synthetic.sample_rows(lang, 200, 128, seed=3)
  np.testing.assert_array_equal(rows, synthetic.sample_rows(lang, 200, 128, seed=3))
  x = rows - synthetic.FIRST_ID
  nll = -np.log(lang.transitions[x[:, :-1], x[:, 1:]]).mean()
  assert abs(nll - lang.entropy_rate) < 0.03 and 0.2 < lang.entropy_rate < np.log(2)
  np.testing.assert_allclose(np.bincount(x[:, 0], minlength=16) / 200, lang.stationary, atol=0.12)


def test_zipf_and_unigram_languages():
  zipf = synthetic.parse("synthetic:zipf", 16)
  assert abs(zipf.entropy_rate - 2.36) < 0.01 and abs(zipf.majority_rate - 0.296) < 0.001   # spec §6a
  uni = synthetic.parse("synthetic:unigram:k=4", 16).sample(np.random.default_rng(1), 128)
  assert len(set(uni.tolist())) == 4


def test_bad_language_specs_name_the_problem():
  with pytest.raises(ValueError, match="unknown synthetic language 'markof'"):
    synthetic.parse("synthetic:markof", 16)
  with pytest.raises(ValueError, match="'successor=2' is not an option of synthetic:markov"):
    synthetic.parse("synthetic:markov:successor=2", 16)
  with pytest.raises(ValueError, match="data.vocab_size=38"):
    synthetic.parse("synthetic:pcfg", 16)


def test_language_source_resumes_and_holds_out_symbols_at_evaluation():
  import ml_collections
  cfg = ml_collections.ConfigDict(dict(corpus="synthetic:symbolic", vocab_size=32, seq_len=64, num_shards=0))
  src = language_source(cfg)
  it = src.train_iterator(global_batch=4, seed=0)
  next(it)
  state = it.get_state()
  b = next(it)
  it2 = src.train_iterator(global_batch=4, seed=0)
  it2.set_state(state)
  np.testing.assert_array_equal(next(it2)["tokens"], b["tokens"])
  content = lambda t: set((t - synthetic.FIRST_ID).ravel().tolist()) - {synthetic.SEPARATOR, synthetic.END}  # noqa: E731
  assert max(content(b["tokens"])) < 16
  assert min(content(next(src.eval_iterator(global_batch=4, seed=0))["tokens"])) >= 16


def test_cipher_permutes_each_row_independently_and_keeps_special_ids():
  rows = np.tile(np.arange(30, dtype=np.int32), (3, 1))
  c = encipher(rows, 30, 4, seed=0)
  np.testing.assert_array_equal(c[:, :4], rows[:, :4])
  for r in c:
    assert sorted(r[4:]) == list(range(4, 30))
  assert not np.array_equal(c[0], c[1])
  np.testing.assert_array_equal(c, encipher(rows, 30, 4, seed=0))
  x = np.random.default_rng(0).integers(4, 30, (2, 50)).astype(np.int32)
  cx = encipher(x, 30, 4, seed=0)
  for r in range(2):   # the same id always maps to the same id within a row
    for v in np.unique(x[r]):
      assert len(set(cx[r][x[r] == v])) == 1


def test_symbol_and_character_vocabularies_round_trip():
  v = SymbolVocabulary(16)
  assert v.size == 20 and v.decode(v.encode("abc p")) == "abcp"
  with pytest.raises(ValueError, match="outside this vocabulary"):
    v.encode("z")
  c = CharVocabulary.from_texts(["aab", "abc"], size=8)
  assert c.chars == "abc" and c.size == 8
  assert c.encode("abz") == [5, 6, 4] and c.decode(c.encode("cab")) == "cab"


def test_symbolic_exact_match_is_one_for_the_rule_solver_and_lower_for_a_wrong_rule():
  from models.causal_lm.analysis import episode_exact_match
  r = synthetic.symbolic_rows(32, 16, 64, seed=0)
  tokens = r["tokens"]
  sep, end = synthetic.SEPARATOR + synthetic.FIRST_ID, synthetic.END + synthetic.FIRST_ID

  def solver(wrong):
    def apply_fn(variables, tok):
      tok = np.asarray(tok)
      out = np.zeros((*tok.shape, 64), np.float32)
      for b in range(tok.shape[0]):
        for e in np.unique(r["episode"][b][r["episode"][b] > 0]):
          idx = np.flatnonzero(r["episode"][b] == e)
          ep = list(tok[b, idx])
          s = ep.index(sep)
          body = ep[:s]
          if r["copy"][b, idx].any():
            answer = body + [end]
          else:
            key = ep[s + 1]
            answer = [body[body[0::2].index(key) * 2 + 1], end]
          if wrong:   # off by one: the next symbol of the body instead
            answer = answer[1:] + [end]
          first = idx[0] + len(ep) - len(answer)
          for j, a in enumerate(answer):
            out[b, first + j - 1, a] = 1.0
      return jnp.asarray(out)
    return apply_fn

  for task in ("copy", "lookup"):
    assert r[task].any()
    assert episode_exact_match(solver(False), None, tokens, r[task], r["episode"], embed_keys=False, jit=False) == 1.0
    assert episode_exact_match(solver(True), None, tokens, r[task], r["episode"], embed_keys=False, jit=False) < 0.5
