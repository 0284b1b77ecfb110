"""ELECTRA (models/electra/): replaced-token detection, the same-size masked-LM baseline, and the classifier."""
import dataclasses

from configs.families import register
from configs.families.common import (CLASSIFICATION_KEYS, classify_decoder, documents, fill_mask_decoder,
                                     labelled_task, model_vocab_size)
from models.electra import (ElectraConfig, ElectraForMaskedLM, ElectraForSequenceClassification,
                            ElectraPretrainingModel, ReplacedTokenDetectionObjective, SlotMaskedLmObjective,
                            SlotMasking, max_predictions)
from models.family import Family, HfInterop, ModuleFn, token_batch_spec
from models.hparams import model_keys
from models.modernbert import SequenceClassificationObjective

MASKING_KEYS = {"objective.mask_rate": None, "objective.mask_token_frac": None,
                "objective.random_token_frac": None, "eval.mask_rate": None, "decode.prompts": None}


def _hparams(config, vocab) -> ElectraConfig:
  hp = ElectraConfig.from_config(config.model, model_vocab_size(config, vocab))
  if hp.backbone == "classic" and config.data.seq_len > hp.max_position_embeddings:
    raise ValueError(f"data.seq_len={config.data.seq_len} exceeds model.max_position_embeddings="
                     f"{hp.max_position_embeddings} (the classic backbone's learned position table)")
  return hp


def _masking(config, vocab, mask_rate: float) -> SlotMasking:
  o = config.objective
  return SlotMasking(mask_id=vocab.mask_id, special_ids=vocab.special_ids, vocab_size=vocab.size,
                     random_low=vocab.first_normal_id, mask_rate=mask_rate, mask_token_frac=o.mask_token_frac,
                     random_token_frac=o.random_token_frac)


def _load(paths):
  """One directory (an ElectraForPreTraining or ElectraForMaskedLM tower) or two: the released discriminator and
  generator pair, as one joint model."""
  from models.hf import load_electra, load_electra_pretraining
  model, params = load_electra_pretraining(*paths) if len(paths) == 2 else load_electra(paths[0])
  return params, {"model_vocab_size": model.cfg.vocab_size}, model.cfg


def _save(config, compat, params, path):
  """HF_DIR/discriminator (ElectraForPreTraining) and HF_DIR/generator (ElectraForMaskedLM)."""
  import os

  from models.hf import save_electra_pretraining
  module = ElectraPretrainingModel(ElectraConfig.from_config(config.model, compat["model_vocab_size"]))
  save_electra_pretraining(module, params, os.path.join(path, "discriminator"), os.path.join(path, "generator"))


@register("electra", {**model_keys(ElectraConfig), **MASKING_KEYS, "objective.gen_weight": None,
                      "objective.disc_weight": None, "objective.temperature": None},
          hf=HfInterop(_load, _save), smoke="configs/electra.py:tiny")
def electra(config, vocab) -> Family:
  hp = _hparams(config, vocab)
  o = config.objective
  objective = ReplacedTokenDetectionObjective(_masking(config, vocab, o.mask_rate), gen_weight=o.gen_weight,
                                              disc_weight=o.disc_weight, temperature=o.temperature,
                                              dropout=hp.dropout_rate > 0)
  eval_objective = dataclasses.replace(objective, masking=_masking(config, vocab, config.eval.mask_rate),
                                       dropout=False)
  module = ElectraPretrainingModel(hp)
  seq = config.data.seq_len

  return Family("electra", module, objective, hp, token_batch_spec(seq), documents(config, vocab),
                lambda s: hp.flops_per_token(s, o.mask_rate), seq, eval_objective=eval_objective,
                decode=fill_mask_decoder(ModuleFn(module, method="fill_logits"), config, vocab),   # shows the generator
                prompts=tuple(config.decode.prompts), compat={"model_vocab_size": hp.vocab_size})


@register("electra_mlm", {**model_keys(ElectraConfig), **MASKING_KEYS}, smoke="configs/electra.py:tiny,mlm")
def electra_mlm(config, vocab) -> Family:
  """The same-size masked-LM baseline of the ELECTRA paper (BERT recipe on the discriminator's shape)."""
  hp = _hparams(config, vocab)
  o = config.objective
  objective = SlotMaskedLmObjective(_masking(config, vocab, o.mask_rate), dropout=hp.dropout_rate > 0)
  eval_objective = SlotMaskedLmObjective(_masking(config, vocab, config.eval.mask_rate))
  module = ElectraForMaskedLM(hp)
  seq = config.data.seq_len
  flops = lambda s: hp.mlm_flops_per_token(s, max_predictions(s, o.mask_rate) / s)  # noqa: E731
  return Family("electra_mlm", module, objective, hp, token_batch_spec(seq), documents(config, vocab), flops, seq,
                eval_objective=eval_objective, decode=fill_mask_decoder(module.apply, config, vocab),
                prompts=tuple(config.decode.prompts),
                compat={"model_vocab_size": hp.vocab_size})


@register("electra_classifier", {**model_keys(ElectraConfig, "pooling", "electra_tower"), **CLASSIFICATION_KEYS,
                                   "decode.prompts": None},
          smoke="configs/electra_finetune.py:tiny")
def electra_classifier(config, vocab) -> Family:
  hp = _hparams(config, vocab)
  module = ElectraForSequenceClassification(hp, num_labels=config.data.num_classes, pooling=config.model.pooling,
                                            tower=config.model.electra_tower)
  d, seq, task = hp.hidden_size, config.data.seq_len, labelled_task(config, vocab)
  return Family("electra_classifier", module, SequenceClassificationObjective(), hp,
                token_batch_spec(seq, labels=True), task,
                lambda s: 3 * (2 * hp.encoder_matmul_params() + hp.attention_flops(s)) + 6 * d * d / s, seq,
                decode=classify_decoder(module.apply, config, vocab), prompts=tuple(config.decode.prompts),
                compat={"model_vocab_size": hp.vocab_size}, baseline=task.label_prior_baseline)
