"""ModernBERT: masked-LM pretraining and sequence classification (models/modernbert/)."""
import dataclasses

from configs.families import register
from configs.families.common import (CLASSIFICATION_KEYS, classify_decoder, documents, fill_mask_decoder,
                                     labelled_task, model_vocab_size)
from models.family import Family, HfInterop, token_batch_spec
from models.hparams import model_keys
from models.modernbert import (MaskedLmObjective, ModernBertConfig, ModernBertForMaskedLM,
                               ModernBertForSequenceClassification, SequenceClassificationObjective)


def _load(paths):
  from models.hf import load_modernbert
  model, params = load_modernbert(paths[0])
  return params, {"model_vocab_size": model.cfg.vocab_size}, model.cfg


def _save(config, compat, params, path):
  from models.hf import save_modernbert
  save_modernbert(ModernBertConfig.from_config(config.model, compat["model_vocab_size"]), params, path)


def _save_classifier(config, compat, params, path):
  from data.sources import vocab_from_config
  from models.hf import save_modernbert_classifier
  names = labelled_task(config, vocab_from_config(config.data)).task().class_names
  save_modernbert_classifier(ModernBertConfig.from_config(config.model, compat["model_vocab_size"]), params, path,
                             names, config.model.pooling)


@register("modernbert_mlm", {**model_keys(ModernBertConfig), "objective.mask_rate": None,
                             "objective.sparse_head": (True, False), "eval.mask_rate": None, "decode.prompts": None},
          hf=HfInterop(_load, _save), smoke="configs/test_tiny.py")
def modernbert_mlm(config, vocab) -> Family:
  hp = ModernBertConfig.from_config(config.model, model_vocab_size(config, vocab))
  objective = MaskedLmObjective(vocab_size=vocab.size, mask_id=vocab.mask_id, special_ids=vocab.special_ids,
                                random_low=vocab.first_normal_id, mask_rate=config.objective.mask_rate,
                                sparse_head=config.objective.get("sparse_head", True))
  module = ModernBertForMaskedLM(hp)
  seq = config.data.seq_len
  docs = documents(config, vocab)

  def flops_per_token(s):   # executed: the sparse head runs its dense layer and decoder on `slots` rows of s
    slots = objective.prediction_slots(s)
    return hp.flops_per_token(s, head_rows=1.0 if slots is None else slots / s)

  return Family("modernbert_mlm", module, objective, hp, token_batch_spec(seq), docs,
                flops_per_token, seq, eval_objective=dataclasses.replace(objective, mask_rate=config.eval.mask_rate),
                decode=fill_mask_decoder(module.apply, config, vocab),
                prompts=tuple(config.decode.prompts), compat={"model_vocab_size": hp.vocab_size},
                baseline=docs.unigram_baseline)


@register("modernbert_classifier", {**model_keys(ModernBertConfig, "pooling"), **CLASSIFICATION_KEYS,
                                    "decode.prompts": None},
          hf=HfInterop(save=_save_classifier), smoke="configs/modernbert_finetune.py:tiny")
def modernbert_classifier(config, vocab) -> Family:
  hp = ModernBertConfig.from_config(config.model, model_vocab_size(config, vocab))
  module = ModernBertForSequenceClassification(hp, num_labels=config.data.num_classes, pooling=config.model.pooling)
  seq, task = config.data.seq_len, labelled_task(config, vocab)
  return Family("modernbert_classifier", module, SequenceClassificationObjective(), hp,
                token_batch_spec(seq, labels=True), task,
                lambda s: hp.flops_per_token(s) - 6 * hp.hidden_size * hp.vocab_size, seq,   # no decoder
                decode=classify_decoder(module.apply, config, vocab), prompts=tuple(config.decode.prompts),
                compat={"model_vocab_size": hp.vocab_size}, baseline=task.label_prior_baseline)
