"""The AriEL training data (synthetic:house_questions) and the AE / VAE baselines (models/sentence_vae) in the
generic trainer, with greedy latent decoding (decode/latent.py) checked against the teacher-forced model."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data import sentences as S
from data import synthetic


def test_house_questions_rows_are_framed_sentences_of_their_split():
  language = S.house_questions("sentences")
  train_idx, held_idx = S.split(language)
  assert (len(train_idx), len(held_idx)) == (6899, 1725) and not set(train_idx) & set(held_idx)
  lang = synthetic.parse("synthetic:house_questions", 38)
  for split, idx in (("train", train_idx), ("eval", held_idx)):
    allowed = {language.sentences[i] for i in idx}
    rows = synthetic.language_rows(lang, 12, split)
    seen = set()
    for i in range(300):
      ex = rows(3, i)
      n = int(ex["segment_ids"].sum())
      assert ex["tokens"][0] == 1 and ex["tokens"][n - 1] == 2 and (ex["tokens"][n:] == 0).all()
      assert (ex["positions"][:n] == np.arange(n)).all()
      sentence = tuple(int(x) for x in ex["tokens"][1:n])
      assert sentence in allowed
      seen.add(sentence)
    assert len(seen) > 250   # uniform over ~7k (or ~1.7k) sentences: few repeats in 300
  with pytest.raises(ValueError, match="data.seq_len=8"):
    synthetic.language_rows(lang, 8)(0, 1)
  with pytest.raises(ValueError, match="weights='zipf'"):
    synthetic.parse("synthetic:house_questions:weights=zipf", 38)


def test_vae_kl_is_the_closed_form_of_a_monte_carlo_estimate():
  from models.sentence_vae import SentenceAutoencoderObjective
  obj = SentenceAutoencoderObjective(variational=True, kl_warmup_steps=0, latent_dim=3)
  mu, logvar = np.array([[0.5, -1.0, 0.2]]), np.array([[0.3, -0.7, 0.0]])

  def apply_fn(variables, tokens, seg, noise, decoder_inputs=None):
    del variables, seg, noise, decoder_inputs
    return jnp.zeros((1, 4, 5)), jnp.asarray(mu), jnp.asarray(logvar)
  batch = obj.prepare({"tokens": jnp.ones((1, 4), jnp.int32), "segment_ids": jnp.ones((1, 4), jnp.int32)},
                      jax.random.PRNGKey(0), step=10)
  _, metrics = obj.loss(apply_fn, None, batch, jax.random.PRNGKey(1))
  r = np.random.default_rng(0)
  sd = np.exp(logvar / 2)
  z = mu + sd * r.standard_normal((400_000, 3))
  log_q = -0.5 * (((z - mu) / sd) ** 2 + logvar + np.log(2 * np.pi)).sum(1)
  log_p = -0.5 * (z ** 2 + np.log(2 * np.pi)).sum(1)
  mc = log_q - log_p
  assert abs(float(metrics["kl"]) - mc.mean()) < 4 * mc.std() / np.sqrt(len(mc))


@pytest.mark.slow
@pytest.mark.parametrize("arg", ["ae,tiny", "vae,tiny"])
def test_baselines_train_in_the_generic_loop(tmp_path, arg):
  from configs import ariel
  from train.loop import train
  metrics = train(ariel.get_config(arg), str(tmp_path))
  assert np.isfinite(metrics["loss"]) and metrics["loss"] < np.log(42)
  assert ("kl" in metrics) == arg.startswith("vae")


def test_greedy_latent_decoding_matches_teacher_forcing():
  """Greedy decoding from the encoder's means: each emitted token is the argmax of the teacher-forced logits
  of the decoded prefix (the scan's cell steps = the training forward pass)."""
  from configs import ariel
  from configs.families import build
  from data.vocab import SymbolVocabulary
  from decode.latent import greedy_from_latent, latent_means
  family = build(ariel.get_config("ae,tiny"), SymbolVocabulary(38))
  module = family.module
  params = nn.unbox(jax.jit(family.init_variables)(jax.random.PRNGKey(0)))["params"]
  language = S.house_questions()
  tokens = np.zeros((8, 12), np.int32)
  seg = np.zeros_like(tokens)
  for i, s in enumerate(language.sentences[::1000][:8]):
    tokens[i, 0], tokens[i, 1:len(s) + 1], seg[i, :len(s) + 1] = 1, s, 1
  mu = latent_means(module, params, tokens, seg)
  out = np.asarray(greedy_from_latent(module, params, mu, maxlen=11, bos=1, eos=2, pad=0))
  inputs = np.concatenate([np.ones((8, 1), np.int32), out], axis=1)
  logits = module.apply({"params": params}, jnp.asarray(inputs), mu, method=module.decode_teacher_forced)
  argmax = np.asarray(jnp.argmax(logits, -1))[:, :11]
  for i in range(8):
    stop = np.flatnonzero(out[i] == 2)
    n = stop[0] + 1 if stop.size else 11
    assert (argmax[i, :n] == out[i, :n]).all()


def test_word_dropout_masks_decoder_words_at_its_rate_and_never_bos_or_padding():
  from models.sentence_vae import SentenceAutoencoderObjective
  obj = SentenceAutoencoderObjective(word_dropout=0.3, mask_id=3)
  tokens = jnp.tile(jnp.arange(5, 17, dtype=jnp.int32), (400, 1)).at[:, 0].set(1)
  seg = jnp.ones_like(tokens).at[:, 9:].set(0)
  inputs = np.asarray(obj.prepare({"tokens": tokens, "segment_ids": seg}, jax.random.PRNGKey(0))["decoder_inputs"])
  dropped = inputs == 3
  assert not dropped[:, 0].any() and not dropped[:, 9:].any()
  assert (inputs[~dropped] == np.asarray(tokens)[~dropped]).all()
  assert abs(dropped[:, 1:9].mean() - 0.3) < 0.02      # 3,200 draws: 2.5 standard errors
