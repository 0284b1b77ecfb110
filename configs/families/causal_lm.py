"""The causal LM (models/causal_lm/): next-token training on packed documents, KV-cache generation."""
from configs.families import model_vocab_size, register
from configs.families.common import documents
from models.causal_lm import CausalLm, CausalLmConfig, NextTokenObjective
from models.family import Family, HfInterop, token_batch_spec
from models.hparams import model_keys

DECODE_KEYS = {"decode.prompts": None, "decode.max_new_tokens": None, "decode.temperature": None,
               "decode.top_k": None, "decode.top_p": None}


def _load(paths):
  from models.hf import load_gpt2
  model, params = load_gpt2(paths[0])
  return params, {"model_vocab_size": model.cfg.vocab_size}


def _save(model_cfg, compat, params, path):
  from models.hf import save_gpt2
  save_gpt2(CausalLmConfig.from_config(model_cfg, compat["model_vocab_size"]), params, path)


@register("causal_lm", {**model_keys(CausalLmConfig), **DECODE_KEYS}, hf=HfInterop(_load, _save))
def causal_lm(config, vocab) -> Family:
  from decode.sampling import SamplerConfig
  hp = CausalLmConfig.from_config(config.model, model_vocab_size(config, vocab))
  seq = config.data.seq_len
  if hp.style == "gpt2" and seq > hp.max_position_embeddings:
    raise ValueError(f"data.seq_len={seq} exceeds model.max_position_embeddings={hp.max_position_embeddings}; "
                     "raise the latter or shorten the former")
  module = CausalLm(hp)
  d = config.decode
  sampler = None if d.temperature == 0 else SamplerConfig(temperature=d.temperature, top_k=d.top_k or None,
                                                          top_p=d.top_p if d.top_p < 1 else None)
  max_new, seed = d.max_new_tokens, config.seed

  def check(prompts):   # GPT-2's learned position table ends at max_position_embeddings
    for p in prompts:
      n = 1 + len(vocab.encode(p)) + max_new
      if hp.style == "gpt2" and n > hp.max_position_embeddings:
        raise ValueError(f"prompt {p[:40]!r}... needs {n} positions with decode.max_new_tokens={max_new}, more than "
                         f"model.max_position_embeddings={hp.max_position_embeddings}; shorten it or lower "
                         "decode.max_new_tokens")

  check(d.prompts)

  def decode(params, prompts, mesh=None):
    check(prompts)
    from decode.generate import generate_texts
    return generate_texts(module, params, vocab, list(prompts), max_new_tokens=max_new,
                          sampler=sampler, seed=seed, mesh=mesh)

  return Family("causal_lm", module, NextTokenObjective(), hp, token_batch_spec(seq), documents(config, vocab),
                hp.flops_per_token, seq, decode=decode, prompts=tuple(d.prompts),
                compat={"model_vocab_size": hp.vocab_size})
