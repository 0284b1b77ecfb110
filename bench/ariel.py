"""AriEL around a trained LM against autoencoder and VAE latents on the fixture grammar (ariel.md §6.2, A7-A9).

  python -m bench.ariel [--steps 1500] [--seed 0] [--n 2000] [--workdir /tmp/ariel_bench]

Trains configs/ariel.py (causal LM), :ae and :vae for --steps each on the 80% training split, then reports
  A7  reconstruction (encode -> decode exact match) on the training and the held-out sentences;
  A8  N uniform points of [0, 1)^16 decoded by AriEL: valid (a sentence of the grammar), unique, valid and
      unique, and novel (valid, unique and held out: never trained on), as fractions of N;
  A9  the same for N latent points of the AE (uniform in the bounding box of its training latents) and the VAE
      (N(0, I)), greedy-decoded;
  and AriEL's sentences per second for encoding and decoding at batch 1 and 256 (float64 coder), beside two
  references measured in the same run: scoring the same sentences with one uncached forward pass (the LM work
  encoding cannot avoid) and the reference code's design (one sentence at a time, the whole prefix re-run through
  the LM at every position, the interval update in NumPy float64).
--word_dropout trains the AE and VAE with word dropout 0.3 (configs/ariel.py `dropout`).
Writes WORKDIR/results[_wd]_s<seed>.json; the last line is `ariel_valid_unique=... ae_valid_unique=... vae_valid_unique=...`.
"""
import json
import os
import time

from absl import app, flags

from bench import record

_STEPS = flags.DEFINE_integer("steps", 1500, "training steps of each model")
_SEED = flags.DEFINE_integer("seed", 0, "config seed (init, data order) and sampling seed")
_N = flags.DEFINE_integer("n", 2000, "latent points sampled per model")
_DROPOUT = flags.DEFINE_bool("word_dropout", False, "train the AE and VAE with configs/ariel.py's `dropout`")
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


def reference_encode(probs_fn, sentence, d):
  """The Keras prototype's loop, one sentence: the LM re-reads the prefix at every position (no cache)."""
  import numpy as np
  lo, hi = np.zeros(d), np.ones(d)
  for t, tok in enumerate(sentence):
    p = probs_fn(sentence[:t]).astype(np.float64)
    c = np.cumsum(p) / p.sum()
    j, r = t % d, hi[t % d] - lo[t % d]
    lo[j], hi[j] = lo[j] + r * (c[tok - 1] if tok else 0.0), lo[j] + r * c[tok]
  return (lo + hi) / 2


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
  from train.restore import load_trained
  from train.loop import train
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
  drop = ",dropout" if _DROPOUT.value else ""
  for name, arg in (("lm", ""), ("ae", "ae" + drop), ("vae", "vae" + drop)):
    c = _config(arg, _STEPS.value, _SEED.value)
    tag = "_wd" if drop and name != "lm" else ""
    wd = os.path.join(_WORKDIR.value, f"{name}{tag}_s{_SEED.value}_n{_STEPS.value}")
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
  samples = ariel.sentences(ariel.decode(lm, params, r.random((_N.value, d)), MAXLEN), language.eos)
  out["lm"]["samples"] = language.sample_metrics(samples, held_idx)

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
    out[name]["samples"] = language.sample_metrics(ariel.sentences(greedy(z), language.eos), held_idx)

  module, params = models["lm"]
  speed = {}
  for batch in (1, 256):
    k = 64 if batch == 1 else 8
    rows = [tokens[r.choice(len(tokens), batch)] for _ in range(k)]
    points = [r.random((batch, d)) for _ in range(k)]
    speed[f"encode_b{batch}"] = _rate(lambda x: ariel.encode(lm, params, x, d), rows)
    speed[f"decode_b{batch}"] = _rate(lambda x: ariel.decode(lm, params, x, MAXLEN), points)
    score = jax.jit(lambda p, x: jax.nn.log_softmax(module.apply({"params": p}, x), -1))
    framed_rows = [np.concatenate([np.full((batch, 1), language.bos), x], 1)[:, :-1] for x in rows]
    speed[f"score_b{batch}"] = _rate(lambda x: np.asarray(score(params, x)), framed_rows)
  fixed = jax.jit(lambda p, x: jax.nn.softmax(module.apply({"params": p}, x), -1))

  def probs_fn(prefix):   # prefix padded to a fixed width (one compilation), the last real position read
    x = np.full((1, MAXLEN), language.eos, np.int32)
    x[0, 0], x[0, 1:len(prefix) + 1] = language.bos, prefix
    return np.asarray(fixed(params, x))[0, len(prefix)]
  some = [language.sentences[i] for i in r.choice(len(tokens), 64)]
  z_ref = np.stack([reference_encode(probs_fn, s, d) for s in some[:4]])
  z_ours, _ = ariel.encode(lm, params, tokens[[language.index[s] for s in some[:4]]], d)
  out["lm"]["reference_max_abs_point_diff"] = float(np.abs(z_ref - z_ours).max())
  speed["reference_encode_b1"] = _rate(lambda ss: [reference_encode(probs_fn, s, d) for s in ss],
                                       [some[i:i + 8] for i in range(0, 64, 8)])
  out["lm"]["sentences_per_s"] = {k: round(v, 1) for k, v in speed.items()}
  from bench.timing import cpu_model
  out["machine"] = f"{cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__}"
  out["word_dropout"] = _DROPOUT.value
  with open(os.path.join(_WORKDIR.value, f"results{'_wd' if drop else ''}_s{_SEED.value}.json"), "w") as f:
    json.dump(out, f, indent=1, default=float)
  for name in ("lm", "ae", "vae"):
    o = out[name]
    loss = o["final_eval"].get("loss")   # absent when the run was already complete (resumed at its last step)
    print(f"{name}: {o['parameters']:,} params, train {o['train_s']} s, eval loss "
          f"{'-' if loss is None else f'{loss:.4f}'} | "
          f"reconstruction train {o['reconstruction_train']:.4f} held-out {o['reconstruction_held_out']:.4f} | "
          f"samples {json.dumps({k: round(v, 4) for k, v in o['samples'].items()})}")
  print(f"AriEL sentences/s: {json.dumps(out['lm']['sentences_per_s'])} ({out['machine']})")
  sps = out["lm"]["sentences_per_s"]
  record.write("ariel", out, headline=[
      record.row("AriEL encoding, batch 1", sps["encode_b1"], sps["reference_encode_b1"], "sentences/s",
                 reference_name="prototype-style encoder"),
      record.row("AriEL encoding, batch 256", sps["encode_b256"], sps["score_b256"], "sentences/s",
                 reference_name="scoring, one uncached forward")])
  print(" ".join(f"{'ariel' if k == 'lm' else k}_valid_unique={out[k]['samples']['valid_unique']:.4f}"
                 for k in ("lm", "ae", "vae")))


if __name__ == "__main__":
  app.run(main)
