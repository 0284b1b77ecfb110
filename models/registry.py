"""Model families by config name: each entry builds (module, objective, FLOP model) from the config and vocabulary.

The trainer is generic: a new family adds an entry here, never a new loop.
"""
import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax

from data.vocab import Vocabulary


@dataclasses.dataclass(frozen=True)
class ModelBundle:
  module: nn.Module               # apply(variables, tokens, segment_ids, positions) -> logits
  objective: Any                  # .prepare(batch, rng) and .loss(apply_fn, params, batch, rng)
  hparams: Any                    # the family's frozen dataclass
  flops_per_token: Callable[[int], float]   # training FLOPs per token at a sequence length
  eval_objective: Any = None      # the objective used for evaluation, if it differs (e.g. a lower mask rate)
  # (params, vocab, prompts, mesh) -> texts: what the "sample" hook and --mode=decode show for this family.
  sample_texts: Callable[..., list[str]] | None = None


def model_vocab_size(config, vocab: Vocabulary) -> int:
  """The embedding size: `model.vocab_size` if set, else the vocabulary rounded up to `model.vocab_multiple`."""
  if config.model.vocab_size:
    if config.model.vocab_size < vocab.size:
      raise ValueError(f"model.vocab_size={config.model.vocab_size} is smaller than the vocabulary ({vocab.size} "
                       f"ids); set --config.model.vocab_size=0 to derive it")
    return config.model.vocab_size
  m = config.model.vocab_multiple
  return -(-vocab.size // m) * m


def _modernbert_mlm(config, vocab: Vocabulary) -> ModelBundle:
  from models.modernbert import MaskedLmObjective, ModernBertConfig, ModernBertForMaskedLM
  hp = ModernBertConfig.from_config(config.model, model_vocab_size(config, vocab))
  objective = MaskedLmObjective(vocab_size=vocab.size, mask_id=vocab.mask_id, special_ids=vocab.special_ids,
                                random_low=vocab.first_normal_id, mask_rate=config.objective.mask_rate)
  module = ModernBertForMaskedLM(hp)

  def sample_texts(params, vocab, prompts, mesh=None):
    from decode.fill_mask import fill_mask_texts
    return fill_mask_texts(module.apply, params, vocab, prompts, config.data.seq_len, mesh)

  return ModelBundle(module, objective, hp, hp.flops_per_token,
                     eval_objective=dataclasses.replace(objective, mask_rate=config.eval.mask_rate),
                     sample_texts=sample_texts)


def _modernbert_classifier(config, vocab: Vocabulary) -> ModelBundle:
  from models.modernbert import ModernBertConfig, ModernBertForSequenceClassification, SequenceClassificationObjective
  hp = ModernBertConfig.from_config(config.model, model_vocab_size(config, vocab))
  module = ModernBertForSequenceClassification(hp, num_labels=config.data.num_classes, pooling=config.model.pooling)
  return ModelBundle(module, SequenceClassificationObjective(), hp,
                     lambda seq: hp.flops_per_token(seq) - 6 * hp.hidden_size * hp.vocab_size)   # no decoder


def _causal_lm(config, vocab: Vocabulary) -> ModelBundle:
  from decode.sampling import SamplerConfig
  from models.causal_lm import CausalLm, CausalLmConfig, NextTokenObjective
  hp = CausalLmConfig.from_config(config.model, model_vocab_size(config, vocab))
  if hp.style == "gpt2" and config.data.seq_len > hp.max_position_embeddings:
    raise ValueError(f"data.seq_len={config.data.seq_len} exceeds model.max_position_embeddings="
                     f"{hp.max_position_embeddings}; raise the latter or shorten the former")
  module = CausalLm(hp)
  d = config.decode
  sampler = None if d.temperature == 0 else SamplerConfig(temperature=d.temperature, top_k=d.top_k or None,
                                                          top_p=d.top_p if d.top_p < 1 else None)

  def sample_texts(params, vocab, prompts, mesh=None):
    from decode.generate import generate_texts
    return generate_texts(module, params, vocab, prompts, max_new_tokens=d.max_new_tokens, sampler=sampler,
                          seed=config.seed, mesh=mesh)

  return ModelBundle(module, NextTokenObjective(), hp, hp.flops_per_token, sample_texts=sample_texts)


def _electra_hparams(config, vocab: Vocabulary):
  from models.electra import ElectraConfig
  hp = ElectraConfig.from_config(config.model, model_vocab_size(config, vocab))
  if hp.backbone == "classic" and config.data.seq_len > hp.max_position_embeddings:
    raise ValueError(f"data.seq_len={config.data.seq_len} exceeds model.max_position_embeddings="
                     f"{hp.max_position_embeddings} (the classic backbone's learned position table)")
  return hp


def _slot_masking(config, vocab: Vocabulary, mask_rate: float):
  from models.electra import SlotMasking
  o = config.objective
  return SlotMasking(mask_id=vocab.mask_id, special_ids=vocab.special_ids, vocab_size=vocab.size,
                     random_low=vocab.first_normal_id, mask_rate=mask_rate, mask_token_frac=o.mask_token_frac,
                     random_token_frac=o.random_token_frac)


def _fill_mask_sampler(apply_fn, config):
  def sample_texts(params, vocab, prompts, mesh=None):
    from decode.fill_mask import fill_mask_texts
    return fill_mask_texts(apply_fn, params, vocab, prompts, config.data.seq_len, mesh)
  return sample_texts


def _electra(config, vocab: Vocabulary) -> ModelBundle:
  from models.electra import ElectraPretrainingModel, ReplacedTokenDetectionObjective
  hp = _electra_hparams(config, vocab)
  o = config.objective
  objective = ReplacedTokenDetectionObjective(_slot_masking(config, vocab, o.mask_rate), gen_weight=o.gen_weight,
                                              disc_weight=o.disc_weight, temperature=o.temperature,
                                              dropout=hp.dropout_rate > 0)
  eval_objective = dataclasses.replace(objective, masking=_slot_masking(config, vocab, config.eval.mask_rate),
                                       dropout=False)
  module = ElectraPretrainingModel(hp)

  def generator_apply(variables, tokens_BT, segment_ids_BT):   # "[MASK]" filling shows the generator
    positions = jax.numpy.broadcast_to(jax.numpy.arange(tokens_BT.shape[1]), tokens_BT.shape)
    return module.apply(variables, tokens_BT, segment_ids_BT, positions, method="generator_logits")

  return ModelBundle(module, objective, hp, lambda seq: hp.flops_per_token(seq, o.mask_rate),
                     eval_objective=eval_objective, sample_texts=_fill_mask_sampler(generator_apply, config))


def _electra_mlm(config, vocab: Vocabulary) -> ModelBundle:
  """The same-size masked-LM baseline of the ELECTRA paper (BERT recipe on the discriminator's shape)."""
  from models.electra import ElectraForMaskedLM, SlotMaskedLmObjective, max_predictions
  hp = _electra_hparams(config, vocab)
  o = config.objective
  objective = SlotMaskedLmObjective(_slot_masking(config, vocab, o.mask_rate), dropout=hp.dropout_rate > 0)
  eval_objective = SlotMaskedLmObjective(_slot_masking(config, vocab, config.eval.mask_rate))
  module = ElectraForMaskedLM(hp)
  flops = lambda seq: hp.mlm_flops_per_token(seq, max_predictions(seq, o.mask_rate) / seq)  # noqa: E731
  return ModelBundle(module, objective, hp, flops, eval_objective=eval_objective,
                     sample_texts=_fill_mask_sampler(module.apply, config))


def _electra_classifier(config, vocab: Vocabulary) -> ModelBundle:
  from models.electra import ElectraForSequenceClassification
  from models.modernbert import SequenceClassificationObjective
  hp = _electra_hparams(config, vocab)
  module = ElectraForSequenceClassification(hp, num_labels=config.data.num_classes, pooling=config.model.pooling,
                                            tower=config.model.electra_tower)
  d = hp.hidden_size
  return ModelBundle(module, SequenceClassificationObjective(), hp,
                     lambda seq: 3 * (2 * hp.encoder_matmul_params() + hp.attention_flops(seq)) + 6 * d * d / seq)


def _asarm(config, vocab: Vocabulary) -> ModelBundle:
  from models.asarm import AnySubsetObjective, AsArm, AsArmConfig
  hp = AsArmConfig.from_config(config.model, model_vocab_size(config, vocab), vocab.mask_id)
  o = config.objective
  objective = AnySubsetObjective(start_rate=o.start_rate, final_min_rate=o.final_min_rate,
                                 final_max_rate=o.final_max_rate, rate_warmup_steps=o.rate_warmup_steps,
                                 parallel_weight=o.parallel_weight)
  module = AsArm(hp)
  d = config.decode

  def sample_texts(params, vocab, prompts, mesh=None):   # infill the "[MASK]"s with ASSD
    del mesh
    from decode.infill import infill_texts
    texts, _ = infill_texts(module.apply, params, vocab, prompts, config.data.seq_len, sampler="assd",
                            k=d.assd_k, temperature=d.temperature or 1.0, seed=config.seed)
    return texts

  slots = 2 * objective.num_slots(config.data.seq_len)
  return ModelBundle(module, objective, hp, lambda seq: hp.flops_per_token(seq, slots), sample_texts=sample_texts)


REGISTRY: dict[str, Callable[[Any, Vocabulary], ModelBundle]] = {
    "modernbert_mlm": _modernbert_mlm,
    "causal_lm": _causal_lm,
    "modernbert_classifier": _modernbert_classifier,
    "electra": _electra,
    "electra_mlm": _electra_mlm,
    "electra_classifier": _electra_classifier,
    "asarm": _asarm,
}


def build(config, vocab: Vocabulary) -> ModelBundle:
  name = config.model.name
  if name not in REGISTRY:
    raise ValueError(f"unknown model.name={name!r}; registered: {sorted(REGISTRY)}")
  return REGISTRY[name](config, vocab)
