"""The causal LM (models/causal_lm/): next-token training on packed documents or a synthetic language, KV-cache
generation (learned embeddings), and the lexinvariant / semi-lexinvariant embedding modes (model.embedding) with
their evaluations (eval.analyses, run by --mode=eval: models/causal_lm/analysis.py)."""
from configs.families import model_vocab_size, register
from configs.families.common import documents
from models.causal_lm import CausalLm, CausalLmConfig, NextTokenObjective
from models.causal_lm.lexical import EMBEDDINGS, LEX_EMBED_STDS, LEX_SAMPLES
from models.family import Family, HfInterop, token_batch_spec
from models.hparams import model_keys

DECODE_KEYS = {"decode.prompts": None, "decode.max_new_tokens": None, "decode.temperature": None,
               "decode.top_k": None, "decode.top_p": None}
ANALYSES = ("positions", "cipher", "probe", "symbolic", "ariel")
ARIEL_DIM = 16   # ariel.md: lat_dim = 16 in all experiments
EVAL_KEYS = {"eval.analyses": None, "eval.num_keys": None, "eval.num_sequences": None}
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


def _analyses(config, vocab, hp, module, data):
  """The eval.analyses hook: results of each named analysis on eval.num_sequences held-out rows."""
  names = tuple(config.eval.get("analyses", ()))
  bad = [a for a in names if a not in ANALYSES]
  if bad:
    raise ValueError(f"eval.analyses has {bad}; choose from {list(ANALYSES)}")
  if "symbolic" in names and not config.data.corpus.startswith("synthetic:symbolic"):
    raise ValueError("eval.analyses 'symbolic' scores the in-context symbol task: set data.corpus="
                     "synthetic:symbolic")
  if "ariel" in names and not config.data.corpus.startswith("synthetic:house_questions"):
    raise ValueError("eval.analyses 'ariel' codes sentences of a finite language: set data.corpus="
                     "synthetic:house_questions")
  if "ariel" in names and hp.embedding != "learned":
    raise ValueError("eval.analyses 'ariel' steps the LM through its KV cache: it needs model.embedding='learned'")
  if not names:
    return None
  num_keys, n = int(config.eval.num_keys), int(config.eval.num_sequences)

  def run(params):
    import jax
    import numpy as np
    from data.cipher import encipher
    from models.causal_lm import analysis
    lex = hp.embedding != "learned"
    it = data.eval_iterator(global_batch=config.eval.batch_size, seed=config.seed + 1)
    rows = []
    while sum(len(r["tokens"]) for r in rows) < n:
      rows.append(next(it))
    batch = {k: np.concatenate([r[k] for r in rows])[:n] for k in rows[0]}
    key = jax.random.PRNGKey(config.seed + 3)   # the fixed evaluation key
    ids = (vocab.size, vocab.first_normal_id)
    plain = batch["tokens"]
    ciphered = encipher(plain, *ids, seed=config.seed + 4)
    out = {}

    def curve(tokens):
      nll, count = analysis.position_nll(module.apply, params, tokens, batch["segment_ids"], batch["positions"],
                                         embed_keys=lex, num_keys=num_keys, key=key)
      return {"bins": analysis.bin_means(nll, count), "mean": float(np.nansum(nll * count) / count.sum()),
              "curve": [None if np.isnan(x) else round(float(x), 4) for x in nll]}
    if "positions" in names:
      out["positions"] = curve(plain)
    if "cipher" in names:
      c = curve(ciphered)
      base = out.get("positions") or curve(plain)
      c["delta_mean"] = c["mean"] - base["mean"]
      c["delta_bins"] = {b: c["bins"][b] - base["bins"][b] for b in c["bins"]}
      out["cipher"] = c
    if "probe" in names:   # plaintext identity from the hidden state of the ciphertext (spec L6)
      half = len(plain) // 2
      h = analysis.hidden_states(module.apply, params, ciphered, embed_keys=lex, key=key)
      labels = plain - vocab.first_normal_id
      normal = (labels >= 0) & (batch["segment_ids"] > 0)
      k = vocab.size - vocab.first_normal_id
      test = labels[half:][normal[half:]]
      out["probe"] = {"majority_rate": float(np.bincount(test, minlength=k).max() / max(test.size, 1))}
      for kind in ("linear", "mlp"):
        acc, count = analysis.probe_accuracy(h[:half], labels[:half], h[half:], labels[half:], k, kind=kind,
                                             train_mask_NT=normal[:half], test_mask_NT=normal[half:])
        out["probe"][kind] = analysis.bin_means(np.nan_to_num(acc), count)
    if "symbolic" in names:
      from data.synthetic import symbolic_rows
      out["symbolic"] = {}
      for split in ("train", "eval"):   # seen symbols / held-out symbols
        r = symbolic_rows(config.data.vocab_size, n,
                          config.data.seq_len, config.seed + 5, split)
        for task in ("copy", "lookup"):
          out["symbolic"][f"{task}_{split}_symbols"] = analysis.episode_exact_match(
              module.apply, params, r["tokens"], r[task], r["episode"], embed_keys=lex, num_keys=num_keys, key=key)
    if "ariel" in names:   # AriEL around this LM (decode/ariel.py): spec tests A7 and A8
      from data.synthetic import parse
      from decode import ariel
      language, _, held = parse(config.data.corpus, config.data.vocab_size).finite
      lm = ariel.causal_lm(module, bos=vocab.cls_id, eos=vocab.sep_id)
      maxlen = config.data.seq_len - 1
      sents = language.padded(maxlen)[held[:n]]
      z, _ = ariel.encode(lm, params, sents, ARIEL_DIM)
      points = np.random.default_rng(config.seed + 6).random((n, ARIEL_DIM))
      samples = ariel.sentences(ariel.decode(lm, params, points, maxlen), language.eos)
      out["ariel"] = {"d": ARIEL_DIM, "reconstruction_held_out": float(
          (ariel.decode(lm, params, z, maxlen) == sents).all(axis=1).mean()),
          "samples": language.sample_metrics(samples, held)}
    return out
  return run


@register("causal_lm", {**model_keys(CausalLmConfig, exclude=("num_special",)), **MODEL_CHOICES, **DECODE_KEYS,
                        **EVAL_KEYS}, hf=HfInterop(_load, _save, framing=("cls", "$A")),
          smoke="configs/causal_lm.py:tiny")
def causal_lm(config, vocab) -> Family:
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

  learned = hp.embedding == "learned"   # the random embeddings have no cached decoding (models/causal_lm/model.py)
  return Family("causal_lm", module, NextTokenObjective(embed_keys=not learned), hp, token_batch_spec(seq), data,
                hp.flops_per_token, seq, decode=decode if learned else None, prompts=tuple(d.prompts),
                compat={"model_vocab_size": hp.vocab_size}, analyses=_analyses(config, vocab, hp, module, data),
                baseline=getattr(data, "unigram_baseline", None))
