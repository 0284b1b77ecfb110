"""The causal LM (models/causal_lm/): next-token training on packed documents or a synthetic language, KV-cache
generation (learned embeddings), and the lexinvariant / semi-lexinvariant embedding modes (model.embedding) with
their evaluations (eval.analyses, every eval.analyses_every steps, at the last step and by --mode=eval:
models/causal_lm/evaluations.py)."""
import functools

from configs.families import register
from configs.families.common import documents, model_vocab_size
from decode.text import PROMPT_ENDS
from models.causal_lm import CausalLm, CausalLmConfig, NextTokenObjective, evaluations
from models.causal_lm.lexical import EMBEDDINGS, LEX_EMBED_STDS, LEX_SAMPLES
from models.family import Evaluation, Family, HfInterop, token_batch_spec
from models.hparams import model_keys

DECODE_KEYS = {"decode.prompts": None, "decode.max_new_tokens": None, "decode.temperature": None,
               "decode.top_k": None, "decode.top_p": None, "decode.prompt_end": PROMPT_ENDS,
               "decode.regex": None, "decode.particles": None}
EVAL_KEYS = {"eval.analyses": None, "eval.analyses_every": None, "eval.num_keys": None, "eval.num_sequences": None}
MODEL_CHOICES = {"model.embedding": EMBEDDINGS, "model.lex_embed_std": LEX_EMBED_STDS,
                 "model.lex_sample": LEX_SAMPLES}


def _load(paths):
  from models.hf import load_gpt2
  model, params = load_gpt2(paths[0])
  return params, {"model_vocab_size": model.cfg.vocab_size}, model.cfg


def _save(config, compat, params, path):
  from models.hf import save_gpt2
  hp = CausalLmConfig.from_config(config.model, compat["model_vocab_size"])
  if hp.embedding != "learned":
    raise ValueError(f"model.embedding={hp.embedding!r} has no Hugging Face counterpart (GPT-2 has a learned "
                     "token table); only model.embedding='learned' runs export")
  save_gpt2(hp, params, path)


def _source(config, vocab, hp):
  if config.data.corpus.startswith("synthetic:"):
    from data.sources import language_source
    return language_source(config.data)
  if hp.lex_sample == "full_vocab" and hp.embedding != "learned":
    raise ValueError(f"model.lex_sample='full_vocab' draws one matrix per row, but data.corpus="
                     f"{config.data.corpus!r} packs several documents into a row; use model.lex_sample="
                     "'present_types' (per-document draws)")
  return documents(config, vocab)


def _evals(config, vocab, hp, module, data) -> tuple[Evaluation, ...]:
  """One Evaluation per name in eval.analyses (models/causal_lm/evaluations.py; AriEL's from decode/ariel.py)."""
  names = tuple(config.eval.get("analyses", ()))
  evaluations.check_analyses(names, config.data.corpus, hp.embedding)
  if not names:
    return ()
  n, seed, d = int(config.eval.num_sequences), config.seed, config.data

  def symbolic_rows(split):
    from data.synthetic import symbolic_rows
    return symbolic_rows(d.vocab_size, n, d.seq_len, seed + 5, split)

  def ariel_eval(params):
    from decode.ariel import lm_evaluation
    return lm_evaluation(module, params, corpus=d.corpus, language_size=d.vocab_size, bos=vocab.cls_id,
                         eos=vocab.sep_id, seq_len=d.seq_len, n=n, seed=seed)

  def run(name, params):
    batch = evaluations.held_out_rows(data, config.eval.batch_size, n, seed + 1)
    return evaluations.run_analyses((name,), module.apply, params, batch, vocab_size=vocab.size,
                                    first_normal_id=vocab.first_normal_id, embed_keys=hp.embedding != "learned",
                                    num_keys=int(config.eval.num_keys), seed=seed, symbolic_rows=symbolic_rows,
                                    extra={"ariel": ariel_eval})[name]
  every = int(config.eval.get("analyses_every", 0))
  return tuple(Evaluation(name, functools.partial(run, name), every) for name in names)


@register("causal_lm", {**model_keys(CausalLmConfig, exclude=("num_special",)), **MODEL_CHOICES, **DECODE_KEYS,
                        **EVAL_KEYS}, hf=HfInterop(_load, _save, framing=("cls", "$A")),
          smoke="configs/causal_lm.py:tiny")
def causal_lm(config, vocab) -> Family:
  from decode.text import text_decoder
  from decode.sampling import SamplerConfig
  hp = CausalLmConfig.from_config(config.model, model_vocab_size(config, vocab), vocab.first_normal_id)
  if hp.embedding != "learned" and set(vocab.special_ids) != set(range(vocab.first_normal_id)):
    raise ValueError(f"model.embedding={hp.embedding!r} needs the special ids first (ids below the first normal "
                     f"one); data.vocab={config.data.vocab!r} has specials {vocab.special_ids[:6]}...: use a "
                     "vocabulary whose special tokens come first")
  seq = config.data.seq_len
  if hp.style == "gpt2" and seq > hp.max_position_embeddings:
    raise ValueError(f"data.seq_len={seq} exceeds model.max_position_embeddings={hp.max_position_embeddings}; "
                     "raise the latter or shorten the former")
  module = CausalLm(hp)
  data = _source(config, vocab, hp)
  d = config.decode
  sampler = None if d.temperature == 0 else SamplerConfig(temperature=d.temperature, top_k=d.top_k or None,
                                                          top_p=d.top_p if d.top_p < 1 else None)
  decode = text_decoder(module, vocab, max_new_tokens=d.max_new_tokens, sampler=sampler, seed=config.seed,
                        max_positions=hp.max_position_embeddings if hp.style == "gpt2" else None,
                        prompt_end=d.get("prompt_end", "tokens"), regex=d.get("regex", ""),
                        particles=d.get("particles", 8))
  decode.check(d.prompts)
  learned = hp.embedding == "learned"   # the random embeddings have no cached decoding (models/causal_lm/model.py)
  return Family("causal_lm", module, NextTokenObjective(embed_keys=not learned), hp, token_batch_spec(seq), data,
                hp.flops_per_token, seq, decode=decode if learned else None, prompts=tuple(d.prompts),
                compat={"model_vocab_size": hp.vocab_size}, evals=_evals(config, vocab, hp, module, data),
                baseline=getattr(data, "unigram_baseline", None))
