"""Sentence autoencoder / VAE (models/sentence_vae/): GRU encoder and decoder around a latent of model.latent_dim,
trained by reconstruction (+ annealed KL for the VAE) on one framed sentence per row (data.corpus=
synthetic:house_questions); decoded from latent points by decode/latent.py (bench/ariel.py samples them)."""
import dataclasses

from configs.families import register
from configs.families.common import model_vocab_size
from models.family import Family, token_batch_spec
from models.hparams import from_model_config, model_keys
from models.sentence_vae import SentenceAutoencoder, SentenceAutoencoderObjective, SentenceVaeConfig


@register("sentence_vae", {**model_keys(SentenceVaeConfig), "objective.kl_warmup_steps": None,
                           "objective.word_dropout": None},
          smoke="configs/ariel.py:vae,tiny")
def sentence_vae(config, vocab) -> Family:
  from data import synthetic
  from data.sources import language_source
  corpus = config.data.corpus
  if not corpus.startswith("synthetic:") or not synthetic.parse(corpus, config.data.vocab_size).framed:
    raise ValueError(f"model.name='sentence_vae' encodes one sentence per row; data.corpus={corpus!r} is not a "
                     "framed sentence language: set data.corpus=synthetic:house_questions")
  hp = from_model_config(SentenceVaeConfig, config.model, model_vocab_size(config, vocab))
  if config.objective.kl_warmup_steps < 0:
    raise ValueError(f"objective.kl_warmup_steps={config.objective.kl_warmup_steps} must be >= 0")
  if not 0.0 <= config.objective.word_dropout < 1.0:
    raise ValueError(f"objective.word_dropout={config.objective.word_dropout} must lie in [0, 1)")
  objective = SentenceAutoencoderObjective(hp.variational, int(config.objective.kl_warmup_steps), hp.latent_dim,
                                           float(config.objective.word_dropout), vocab.mask_id)
  seq = config.data.seq_len
  return Family("sentence_vae", SentenceAutoencoder(hp), objective, hp, token_batch_spec(seq),
                language_source(config.data), hp.flops_per_token, seq, compat={"model_vocab_size": hp.vocab_size},
                eval_objective=dataclasses.replace(objective, word_dropout=0.0))   # evaluation reads every word

