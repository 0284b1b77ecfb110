"""Any-subset autoregressive models (models/asarm/), decoded by ASSD infilling."""
from configs.families import register
from configs.families.common import documents, model_vocab_size
from data.sources import framed_rows
from models.asarm import AnySubsetObjective, AsArm, AsArmConfig
from models.family import Family, token_batch_spec
from models.hparams import model_keys

OBJECTIVE_KEYS = ("start_rate", "final_min_rate", "final_max_rate", "rate_warmup_steps", "parallel_weight")


@register("asarm", {**model_keys(AsArmConfig, exclude=("mask_id",)), **{f"objective.{k}": None for k in OBJECTIVE_KEYS},
                    "decode.prompts": None, "decode.assd_k": None, "decode.temperature": None},
          smoke="configs/asarm.py:tiny")
def asarm(config, vocab) -> Family:
  hp = AsArmConfig.from_config(config.model, model_vocab_size(config, vocab), vocab.mask_id)
  objective = AnySubsetObjective(**{k: config.objective[k] for k in OBJECTIVE_KEYS})
  module = AsArm(hp)
  seq, d = config.data.seq_len, config.decode
  k, temperature, seed = d.assd_k, d.temperature, config.seed
  if k < 2:
    raise ValueError(f"decode.assd_k={k}: ASSD drafts at least 2 tokens per round; set --config.decode.assd_k>=2")
  if not temperature > 0:
    raise ValueError(f"decode.temperature={temperature}: the any-subset samplers need a positive temperature")
  framed_rows(vocab, d.prompts, seq)   # refuse too-long prompts before training, not after

  def decode(params, prompts, mesh=None):   # infill the "[MASK]"s with ASSD
    del mesh
    from decode.infill import infill_texts
    texts, _ = infill_texts(module.apply, params, vocab, list(prompts), seq, sampler="assd", k=k,
                            temperature=temperature, seed=seed)
    return texts

  slots = 2 * objective.num_slots(seq)
  return Family("asarm", module, objective, hp, token_batch_spec(seq), documents(config, vocab),
                lambda s: hp.flops_per_token(s, slots), seq, decode=decode,
                prompts=tuple(d.prompts), compat={"model_vocab_size": hp.vocab_size})
