"""AriEL around a trained LM against autoencoder and VAE latents on the fixture grammar (ariel.md §6.2, A7-A9).

  python -m bench.ariel [--steps 1500] [--seed 0] [--n 2000] [--workdir /tmp/ariel_bench]

Trains configs/ariel.py (causal LM), :ae and :vae for --steps each on the 80% training split, then reports
  A7  reconstruction (encode -> decode exact match) on the training and the held-out sentences;
  A8  N uniform points of [0, 1)^16 decoded by AriEL: valid (a sentence of the grammar), unique, valid and
      unique, and novel (valid, unique and held out: never trained on), as fractions of N;
  A9  the same for N latent points of the AE (uniform in the bounding box of its training latents) and the VAE
      (N(0, I)), greedy-decoded;
  and AriEL's sentences per second for encoding and decoding at batch 1 and 256 (float64 coder).
Writes WORKDIR/results.json; the last line is `ariel_valid_unique=... ae_valid_unique=... vae_valid_unique=...`.
"""
import json
import os
import time

from absl import app, flags

_STEPS = flags.DEFINE_integer("steps", 1500, "training steps of each model")
_SEED = flags.DEFINE_integer("seed", 0, "config seed (init, data order) and sampling seed")
_N = flags.DEFINE_integer("n", 2000, "latent points sampled per model")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/ariel_bench", "where the three runs and results.json go")
MAXLEN = 11   # at most 10 words + EOS


def _config(arg, steps, seed):
  from configs import ariel
  c = ariel.get_config(arg)
  c.unlock()
  c.train.num_steps = steps
  c.train.eval_every = c.train.checkpoint_every = steps
  c.seed = seed
  c.lock()
  return c


def sample_metrics(decoded, language, held_out) -> dict:
  """Fractions of N: valid, unique, valid and unique, novel (valid, unique, held out)."""
  from decode.ariel import sentences
  n = len(decoded)
  sents = sentences(decoded, language.eos)
  valid = [s for s in sents if s is not None and s in language.index]
  distinct_valid = set(valid)
  held = {language.sentences[i] for i in held_out}
  return {"valid": len(valid) / n, "unique": len(set(sents)) / n, "valid_unique": len(distinct_valid) / n,
          "novel": len(distinct_valid & held) / n}


def _rate(fn, batches) -> float:
  fn(batches[0])   # compile
  t = time.perf_counter()
  rows = 0
  for b in batches:
    fn(b)
    rows += len(b)
  return rows / (time.perf_counter() - t)


def main(argv):
  del argv
  import jax
  import numpy as np

  from data import sentences as S
  from decode import ariel
  from decode.latent import greedy_from_latent, latent_means
  from train.loop import load_trained, train
  os.makedirs(_WORKDIR.value, exist_ok=True)
  language = S.house_questions("sentences")
  train_idx, held_idx = S.split(language)
  tokens = language.padded(MAXLEN)                  # EOS-padded, for AriEL
  framed = np.zeros((len(tokens), MAXLEN + 1), np.int32)   # [CLS] words [SEP] + PAD, for the autoencoders
  framed[:, 0] = language.bos
  seg = np.zeros_like(framed)
  for i, s in enumerate(language.sentences):
    framed[i, 1:len(s) + 1] = s
    seg[i, :len(s) + 1] = 1
  r = np.random.default_rng(_SEED.value)
  out = {"steps": _STEPS.value, "seed": _SEED.value, "n": _N.value, "train_sentences": len(train_idx),
         "held_out_sentences": len(held_idx)}
  models = {}
  for name, arg in (("lm", ""), ("ae", "ae"), ("vae", "vae")):
    c = _config(arg, _STEPS.value, _SEED.value)
    wd = os.path.join(_WORKDIR.value, f"{name}_s{_SEED.value}_n{_STEPS.value}")
    t = time.perf_counter()
    final = train(c, wd)
    exp, _, params = load_trained(c, wd)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    models[name] = (exp.family.module, params)
    out[name] = {"train_s": round(time.perf_counter() - t, 1), "final_eval": final, "parameters": int(n_params)}

  module, params = models["lm"]
  lm = ariel.causal_lm(module, bos=language.bos, eos=language.eos)
  d = 16
  for split, idx in (("train", train_idx), ("held_out", held_idx)):
    z, _ = ariel.encode(lm, params, tokens[idx], d)
    out["lm"][f"reconstruction_{split}"] = float((ariel.decode(lm, params, z, MAXLEN) == tokens[idx]).all(1).mean())
  out["lm"]["samples"] = sample_metrics(ariel.decode(lm, params, r.random((_N.value, d)), MAXLEN), language, held_idx)

  for name in ("ae", "vae"):
    module, params = models[name]
    mu = np.asarray(latent_means(module, params, framed, seg))

    def greedy(z):
      return np.asarray(greedy_from_latent(module, params, np.asarray(z, np.float32), maxlen=MAXLEN,
                                           bos=language.bos, eos=language.eos, pad=language.eos))
    for split, idx in (("train", train_idx), ("held_out", held_idx)):
      out[name][f"reconstruction_{split}"] = float((greedy(mu[idx]) == tokens[idx]).all(1).mean())
    if name == "ae":   # uniform in the bounding box of the training latents
      lo, hi = mu[train_idx].min(0), mu[train_idx].max(0)
      z = lo + (hi - lo) * r.random((_N.value, mu.shape[1]))
    else:
      z = r.standard_normal((_N.value, mu.shape[1]))
    out[name]["samples"] = sample_metrics(greedy(z), language, held_idx)

  module, params = models["lm"]
  speed = {}
  for batch in (1, 256):
    k = 64 if batch == 1 else 8
    rows = [tokens[r.choice(len(tokens), batch)] for _ in range(k)]
    points = [r.random((batch, d)) for _ in range(k)]
    speed[f"encode_b{batch}"] = _rate(lambda x: ariel.encode(lm, params, x, d), rows)
    speed[f"decode_b{batch}"] = _rate(lambda x: ariel.decode(lm, params, x, MAXLEN), points)
  out["lm"]["sentences_per_s"] = {k: round(v, 1) for k, v in speed.items()}
  from bench.timing import cpu_model
  out["machine"] = f"{cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__}"
  with open(os.path.join(_WORKDIR.value, "results.json"), "w") as f:
    json.dump(out, f, indent=1, default=float)
  for name in ("lm", "ae", "vae"):
    o = out[name]
    print(f"{name}: {o['parameters']:,} params, train {o['train_s']} s, eval loss {o['final_eval']['loss']:.4f} | "
          f"reconstruction train {o['reconstruction_train']:.4f} held-out {o['reconstruction_held_out']:.4f} | "
          f"samples {json.dumps({k: round(v, 4) for k, v in o['samples'].items()})}")
  print(f"AriEL sentences/s: {json.dumps(out['lm']['sentences_per_s'])} ({out['machine']})")
  print(" ".join(f"{'ariel' if k == 'lm' else k}_valid_unique={out[k]['samples']['valid_unique']:.4f}"
                 for k in ("lm", "ae", "vae")))


if __name__ == "__main__":
  app.run(main)
