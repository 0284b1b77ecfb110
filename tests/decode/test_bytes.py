"""decode/bytes.py against enumeration: a finite language of texts (words over {a, b, space} glued without
separators, so tokens cross word boundaries and one text has several tokenizations), a SentencePiece model and a
GPT-2-style byte-level BPE trained on it, and each one's exact token LM (the push-forward of the language through
the tokenizer's own encoding, followed by EOS). The truth is read off the texts directly; nothing here shares code
with the covers."""
import itertools
import math

import numpy as np
import pytest

from decode import bytes as byte_lm

WORDS = ("a", "ab", "ba", "bab", "abba", "b a")


def language(seed: int) -> dict[str, float]:
  rng = np.random.default_rng(seed)
  out: dict[str, float] = {}
  for n in (1, 2, 3):
    for ws in itertools.product(WORDS, repeat=n):
      out["".join(ws)] = out.get("".join(ws), 0.0) + rng.random() ** 3   # uneven masses: no ties between rules
  z = sum(out.values())
  return {s: p / z for s, p in out.items()}


@pytest.fixture(scope="module")
def vocabs(tmp_path_factory):
  """SentencePiece (unigram, dummy-prefix space, byte fallback) and byte-level BPE, both trained on the texts."""
  import transformers
  from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

  from data.hf_tokenizer import HfTokenizerVocabulary
  from data.vocab import SentencePieceVocabulary, train_sentencepiece
  texts = list(language(0)) * 20
  spm = SentencePieceVocabulary(train_sentencepiece(texts, 280, str(tmp_path_factory.mktemp("spm") / "spm")))
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=270,
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.add_special_tokens(["<|endoftext|>"])
  path = tmp_path_factory.mktemp("bpe")
  transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                      unk_token="<|endoftext|>").save_pretrained(path)
  return {"spm": spm, "bpe": HfTokenizerVocabulary(str(path))}


def push_forward(lang: dict[str, float], vocab) -> byte_lm.PrefixModel:
  """The exact token LM of `lang` under `vocab`'s encoding: p(v | prefix) from the encoded texts' masses."""
  table: dict[tuple[int, ...], np.ndarray] = {}
  for s, p in lang.items():
    ids = tuple(vocab.encode(s)) + (vocab.sep_id,)
    for t in range(len(ids)):
      table.setdefault(ids[:t], np.zeros(vocab.size))[ids[t]] += p

  def logprobs(prefixes):
    rows = []
    for pre in prefixes:
      row = table.get(tuple(pre))
      with np.errstate(divide="ignore"):
        rows.append(np.log(row / row.sum()) if row is not None else np.full(vocab.size, -np.inf))
    return np.stack(rows)
  return byte_lm.PrefixModel(logprobs)


def true_next_byte(lang: dict[str, float], x: bytes) -> np.ndarray:
  texts = {s.encode(): p for s, p in lang.items()}
  law = np.zeros(257)
  for s, p in texts.items():
    if s.startswith(x):
      law[s[len(x)] if len(s) > len(x) else 256] += p
  return law / law.sum()


def prefixes(lang) -> list[bytes]:
  return sorted({s.encode()[:k] for s in lang for k in range(len(s.encode()) + 1)})


def tv(p, q) -> float:
  return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


@pytest.mark.parametrize("kind", ["spm", "bpe"])
def test_next_byte_law_and_lemma_are_exact_for_every_prefix_and_the_baselines_are_not(vocabs, kind):
  """Every byte prefix of the language (the empty one included): the covers' total mass is P(text starts with x)
  (the lemma) and the next-byte law (256 bytes and the end) is the true one, within 1e-9; naive prompting and
  token healing differ from it (the tokenization bias the method removes)."""
  vocab, lang = vocabs[kind], language(0)
  model = push_forward(lang, vocab)
  view = byte_lm.ByteLevel.of(model, vocab)
  worst_lemma = worst_law = 0.0
  naive, healed = [], []
  for x in prefixes(lang):
    state = view.state(x)
    truth = true_next_byte(lang, x)
    start = sum(p for s, p in lang.items() if s.encode().startswith(x))
    worst_lemma = max(worst_lemma, abs(math.exp(byte_lm.cover_logmass(state)) - start))
    worst_law = max(worst_law, float(np.abs(np.exp(view.next_byte_logprobs(state)) - truth).max()))
    if x:
      naive.append(tv(np.exp(byte_lm.naive_next_byte_logprobs(model, vocab, x.decode())), truth))
      healed.append(tv(np.exp(byte_lm.healed_next_byte_logprobs(model, vocab, x.decode())), truth))
  assert worst_lemma < 1e-9 and worst_law < 1e-9, (worst_lemma, worst_law)
  assert max(naive) > 0.2 and max(healed) > 0.05, (max(naive), max(healed))
  assert np.mean(healed) < np.mean(naive)   # healing helps on average, as its users find


def test_scores_are_the_texts_probabilities(vocabs):
  lang = language(0)
  view = byte_lm.ByteLevel.of(push_forward(lang, vocabs["spm"]), vocabs["spm"])
  for s in list(lang)[::7]:
    assert view.score(s) == pytest.approx(math.log(lang[s]), abs=1e-9)
  assert view.score("bb") == -np.inf   # not a text of the language (after "b", "b" has probability 0)


@pytest.mark.parametrize("combine", ["mean", "product"])
def test_ensemble_of_two_vocabularies_is_the_rule_applied_to_the_true_laws(vocabs, combine):
  """Two LMs of different languages (other masses) under different tokenizers: the ensemble's next-byte law is
  the mean (or normalised product) of the two true byte laws at every prefix both give mass."""
  one, two = language(0), language(1)
  views = [byte_lm.ByteLevel.of(push_forward(one, vocabs["spm"]), vocabs["spm"]),
           byte_lm.ByteLevel.of(push_forward(two, vocabs["bpe"]), vocabs["bpe"])]
  worst, differ = 0.0, 0
  for x in prefixes(one)[:120]:
    got = np.exp(byte_lm.ensemble_logprobs([v.next_byte_logprobs(v.state(x)) for v in views], combine))
    p, q = true_next_byte(one, x), true_next_byte(two, x)
    want = (p + q) / 2 if combine == "mean" else p * q / (p * q).sum()
    worst = max(worst, float(np.abs(got - want).max()))
    differ += tv(p, q) > 0.01
  assert worst < 1e-9, worst
  assert differ >= 40, differ   # the two laws differ at many prefixes: the rule is seen


def test_cached_causal_lm_forks_give_the_full_forward_laws():
  """CachedCausalLm (a KV-cache row per hypothesis, forked from its parent's) gives the same next-byte laws as
  the same model run on each whole prefix, on an untrained causal LM over bytes, for a prompt that ends mid-word."""
  import jax
  import jax.numpy as jnp

  from data.vocab import ByteVocabulary
  from models.causal_lm import CausalLm, CausalLmConfig
  vocab = ByteVocabulary()
  module = CausalLm(CausalLmConfig(vocab_size=vocab.size, hidden_size=32, num_layers=2, num_heads=4,
                                   intermediate_size=64, max_position_embeddings=64, initializer_range=0.5))
  params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]

  def full(prefixes):
    out = []
    for pre in prefixes:
      tokens = jnp.asarray([[vocab.cls_id, *pre]], jnp.int32)
      out.append(np.asarray(jax.nn.log_softmax(module.apply({"params": params}, tokens)[0, -1]), np.float64))
    return np.stack(out)

  cached = byte_lm.ByteLevel.of(byte_lm.CachedCausalLm(module, params, vocab.cls_id, rows=8, max_len=32), vocab)
  plain = byte_lm.ByteLevel.of(byte_lm.PrefixModel(full), vocab)
  s1, s2 = cached.start(), plain.start()
  for b in "import o".encode():
    np.testing.assert_allclose(cached.next_byte_logprobs(s1), plain.next_byte_logprobs(s2), atol=2e-5)
    s1, s2 = cached.advance(s1, b), plain.advance(s2, b)
  assert len(s1.hypotheses) == 1   # bytes: one tokenization
  text = byte_lm.sample_bytes([cached], "import o", 6, np.random.default_rng(0))
  assert len(text) <= 6


@pytest.fixture(scope="module")
def spm_causal_lm(vocabs):
  """An untrained causal LM over the SentencePiece vocabulary (unit-scale weights: peaked, distinct laws)."""
  import jax
  import jax.numpy as jnp

  from models.causal_lm import CausalLm, CausalLmConfig
  vocab = vocabs["spm"]
  module = CausalLm(CausalLmConfig(vocab_size=vocab.size, hidden_size=32, num_layers=2, num_heads=4,
                                   intermediate_size=64, max_position_embeddings=64, initializer_range=0.5))
  params = module.init(jax.random.PRNGKey(1), jnp.zeros((1, 4), jnp.int32))["params"]

  def full(prefixes):   # the same model on whole prefixes, no cache: the reference the decoders are read against
    return np.stack([np.asarray(jax.nn.log_softmax(module.apply(
        {"params": params}, jnp.asarray([[vocab.cls_id, *pre]], jnp.int32))[0, -1]), np.float64) for pre in prefixes])
  return vocab, module, params, byte_lm.PrefixModel(full)


@pytest.mark.parametrize("prompt", ["b ab"])
def test_decode_hook_heals_and_reads_bytes_as_the_laws_say(spm_causal_lm, prompt):
  """--mode=decode with decode.prompt_end: "heal" drops the prompt's last token and takes the likeliest token whose
  bytes extend it (greedy), "bytes" continues with the likeliest byte of the exact next-byte law; both outputs
  start with the prompt as typed. Read against the uncached model's own laws."""
  from decode.text import text_decoder
  vocab, module, params, full = spm_causal_lm
  heal = text_decoder(module, vocab, max_new_tokens=3, sampler=None, seed=0, prompt_end="heal")
  [healed] = heal(params, [prompt])
  back, r = byte_lm.healed_prompt(vocab, prompt)
  lp = full.logprobs([tuple(back)])[0][:vocab.size]
  allowed = [v for v, b in enumerate(vocab.token_bytes()) if b is not None and b.startswith(r)]
  first = max(allowed, key=lambda v: lp[v])
  assert healed.startswith(vocab.decode(back + [first])) and healed.startswith(prompt)
  assert len(allowed) > 1                                      # a real choice was constrained
  by_bytes = text_decoder(module, vocab, max_new_tokens=3, sampler=None, seed=0, prompt_end="bytes")
  [read] = by_bytes(params, [prompt])
  view = byte_lm.ByteLevel.of(full, vocab)
  want = int(np.argmax(view.next_byte_logprobs(view.state(prompt))))
  assert read.startswith(prompt)
  assert read.encode()[len(prompt.encode()):][:1] == (b"" if want == byte_lm.END else bytes([want]))


@pytest.mark.parametrize("kind", ["spm", "bpe"])
def test_each_text_has_exactly_one_canonical_segmentation_and_it_is_the_encoding(vocabs, kind):
  """Vocabulary.is_canonical over every segmentation of every text of the language into the vocabulary's tokens
  (enumerated here from the token bytes): exactly one is canonical, the tokenizer's own encoding; the texts with
  several segmentations are where "phantom edits" (other ids, the same text) come from."""
  vocab = vocabs[kind]
  table = vocab.token_bytes()
  by_bytes: dict[bytes, list[int]] = {}
  for i, b in enumerate(table):
    if b:
      by_bytes.setdefault(b, []).append(i)

  def segmentations(raw: bytes) -> list[list[int]]:
    if not raw:
      return [[]]
    return [[i] + rest for k in range(1, len(raw) + 1) for i in by_bytes.get(raw[:k], ())
            for rest in segmentations(raw[k:])]
  several, texts = 0, [s for s in language(0) if len(s) <= 4]   # (byte pieces: segmentations grow fast)
  for s in texts:
    segs = segmentations(vocab.byte_prefix + s.encode())
    canonical = [seg for seg in segs if vocab.is_canonical(seg)]
    assert canonical == [vocab.encode(s)], (s, canonical)
    several += len(segs) > 1
  assert several >= 15 and len(texts) >= 20


@pytest.mark.parametrize("kind", ["spm", "bpe"])
def test_covers_from_the_encoding_before_the_last_space_give_the_same_laws(vocabs, kind):
  """ByteLevel.state(x, context=encode(x before its last space)) (one prefill instead of a byte walk from BOS):
  for every prefix of the language with a space after its first byte, the next-byte law is still the truth
  within 1e-9 (both tokenizers split at whitespace; the exact LM gives non-canonical encodings no mass)."""
  vocab, lang = vocabs[kind], language(0)
  view = byte_lm.ByteLevel.of(push_forward(lang, vocab), vocab)
  checked = 0
  for x in prefixes(lang):
    k = x.rfind(b" ")
    if k <= 0:
      continue
    state = view.state(x, context=vocab.encode(x[:k].decode()))
    np.testing.assert_allclose(np.exp(view.next_byte_logprobs(state)), true_next_byte(lang, x), atol=1e-9)
    checked += 1
  assert checked > 50
