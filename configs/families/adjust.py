"""ADJUST (models/mdlm/adjust.py) on a frozen MDLM, trained on the base's own trajectories, sampled with one
base call and K - 1 ADJUST calls per step (decode/diffusion.py adjust_sample)."""
import dataclasses

import numpy as np

from configs.families import register
from configs.families.common import model_vocab_size
from data.sources import Trajectories, framed_rows
from models.family import BatchField, Family
from models.hparams import model_keys
from models.mdlm.adjust import AdjustConfig, AdjustedMdlm
from models.mdlm.adjust_objective import AdjustObjective
from models.modernbert import ModernBertConfig

ADJUST_KEYS = tuple(f"adjust_{f.name}" for f in dataclasses.fields(AdjustConfig))


def trajectory_batch_spec(seq: int) -> dict[str, BatchField]:
  return {k: BatchField((seq,), np.int32, ("length",)) for k in ("tokens", "order", "segment_ids", "positions")}


@register("adjust", {**model_keys(ModernBertConfig, *ADJUST_KEYS), "objective.trajectory_file": None,
                     "decode.prompts": None, "decode.tokens_per_call": None, "decode.temperature": None},
          smoke="configs/adjust.py:tiny")
def adjust(config, vocab) -> Family:
  from decode.sampling import SamplerConfig
  hp = ModernBertConfig.from_config(config.model, model_vocab_size(config, vocab))
  acfg = AdjustConfig(**{f.name: config.model[f"adjust_{f.name}"] for f in dataclasses.fields(AdjustConfig)})
  module = AdjustedMdlm(hp, mask_id=vocab.mask_id, vocab_limit=vocab.size, adjust_cfg=acfg)
  seq, d = config.data.seq_len, config.decode
  if not config.objective.trajectory_file:
    raise ValueError("objective.trajectory_file is empty: write the base's trajectories with its --mode=decode "
                     "--config.decode.trajectories=N --config.decode.trajectory_file=PATH and point to PATH")
  data = Trajectories(config.objective.trajectory_file, seq, config.data.validation_percent, config.data.num_shards)
  k = d.tokens_per_call
  if k < 1 or d.temperature < 0:
    raise ValueError("decode.tokens_per_call must be >= 1 and decode.temperature >= 0")
  sampler = SamplerConfig(temperature=d.temperature) if d.temperature > 0 else None
  framed_rows(vocab, d.prompts, seq)

  def decode(params, prompts, mesh=None):
    del mesh
    from decode.diffusion_fill import adjust_texts
    return adjust_texts(module.apply, params, vocab, prompts, seq, k, sampler, config.seed)

  D, S = hp.hidden_size, acfg.max_depth
  adjust_fwd = 2 * (2 * D * D + 4 * D * D + 3 * D * acfg.intermediate_size + D * hp.vocab_size)
  flops = lambda s: 2 * hp.flops_per_token(s, train=False) + 3 * S * (adjust_fwd + 4 * s * D)   # noqa: E731
  return Family("adjust", module, AdjustObjective(mask_id=vocab.mask_id, max_depth=S), hp,
                trajectory_batch_spec(seq), data, flops, seq, decode=decode, prompts=tuple(d.prompts),
                compat={"model_vocab_size": hp.vocab_size}, frozen=lambda path: path[0] != "adjust",
                base="a frozen MDLM: the MDLM's training workdir (its model.* keys are adopted)")
