"""Masked diffusion LM (models/mdlm/): the MDLM NELBO on packed documents, decoded by decode/diffusion.py."""
import dataclasses

from configs.families import register
from configs.families.common import documents, model_vocab_size
from decode.diffusion import RULES
from decode.diffusion_fill import SAMPLERS, DiffusionDecodeConfig, prompt_rows
from models.family import Family, token_batch_spec
from models.hparams import model_keys
from models.mdlm import LOSS_WEIGHTINGS, MaskedDiffusionLM, MdlmObjective
from models.modernbert import ModernBertConfig

DECODE_KEYS = {"decode.prompts": None, "decode.sampler": SAMPLERS, "decode.rule": RULES, **{
    f"decode.{f.name}": None for f in dataclasses.fields(DiffusionDecodeConfig) if f.name not in ("sampler", "rule")}}


def write_trajectories(apply_fn, params, vocab, seq: int, num: int, path: str, seed: int) -> str:
  """Unconditional full-length rows ([CLS] masks [SEP]) sampled one token per call, saved for configs/adjust.py."""
  import numpy as np

  from decode.trajectories import save_trajectories, sequential_trajectories
  start = np.full(seq, vocab.mask_id, np.int32)
  start[0], start[-1] = vocab.cls_id, vocab.sep_id
  arrays = sequential_trajectories(lambda x, s: apply_fn({"params": params}, x, s), start, np.ones(seq, np.int32),
                                   num, min(num, 256), seed, mask_id=vocab.mask_id,
                                   banned_ids=tuple(vocab.special_ids), vocab_limit=vocab.size)
  save_trajectories(path, arrays)
  return f"[wrote {num} trajectories of {seq} tokens to {path}]"


@register("mdlm", {**model_keys(ModernBertConfig), "objective.loss_weighting": LOSS_WEIGHTINGS,
                   "objective.min_t": None, "objective.antithetic": None, **DECODE_KEYS,
                   "decode.trajectories": None, "decode.trajectory_file": None},
          smoke="configs/mdlm.py:tiny")
def mdlm(config, vocab) -> Family:
  hp = ModernBertConfig.from_config(config.model, model_vocab_size(config, vocab))
  o, d = config.objective, config.decode
  objective = MdlmObjective(mask_id=vocab.mask_id, special_ids=vocab.special_ids, loss_weighting=o.loss_weighting,
                            min_t=o.min_t, antithetic=o.antithetic)
  module = MaskedDiffusionLM(hp, mask_id=vocab.mask_id, vocab_limit=vocab.size)
  decode_cfg = DiffusionDecodeConfig(**{f.name: d[f.name] for f in dataclasses.fields(DiffusionDecodeConfig)})
  seq, seed = config.data.seq_len, config.seed
  prompt_rows(vocab, d.prompts, seq, decode_cfg.max_new_tokens)   # refuse too-long prompts before training

  if d.trajectories < 0 or (d.trajectories and not d.trajectory_file):
    raise ValueError("decode.trajectories=N > 0 writes N sequential trajectories (ADJUST's training data) to "
                     "decode.trajectory_file: set both, or decode.trajectories=0")

  def decode(params, prompts, mesh=None):
    del mesh
    from decode.diffusion_fill import diffusion_texts
    texts, _ = diffusion_texts(module.apply, params, vocab, list(prompts), seq, decode_cfg, seed)
    if d.trajectories:
      texts.append(write_trajectories(module.apply, params, vocab, seq, d.trajectories, d.trajectory_file, seed))
    return texts

  return Family("mdlm", module, objective, hp, token_batch_spec(seq), documents(config, vocab),
                hp.flops_per_token, seq, decode=decode, prompts=tuple(d.prompts),
                compat={"model_vocab_size": hp.vocab_size})
