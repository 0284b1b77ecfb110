"""Single-line infilling on held-out code with a trained AS-ARM: ASSD vs sequential decoding.

  python -m bench.asarm_infill --workdir=/tmp/asarm_default [--holes=128 --k=5 --temperatures=1.0,0.1]

Examples: paragraphs of the validation split (files never seen in training) with at least 3 non-blank lines; one
inner line (chosen at random, 1 to 24 tokens and at most half the model's length) becomes a hole of exactly its
token count (the oracle length, as in the AS-ARM and DiffuLLaMA infilling evaluations); context = the paragraph's
tokens around it, cut to fit the model's length with the hole centred. Scores per sampler and temperature: exact
match (the filled line equals the original line, whitespace-stripped), the model's NLL per token of its own samples,
and NFE per hole token; the model's NLL per token of the true line (teacher-forced, the same for both samplers) is
reported once.
Prints JSON lines and a Markdown table for RESULTS.md.
"""
import json
import statistics

import numpy as np
from absl import app, flags

from bench import record

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/asarm_default", "A configs/asarm.py training workdir.")
_HOLES = flags.DEFINE_integer("holes", 128, "Number of held-out lines.")
_K = flags.DEFINE_integer("k", 5, "ASSD drafts per round.")
_TEMPERATURES = flags.DEFINE_list("temperatures", ["1.0", "0.1"], "Sampling temperatures.")
_CONFIG_ARG = flags.DEFINE_string("config_arg", "", "Argument of configs/asarm.py the workdir was trained with.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the hole choice and samplers.")
_BATCH = flags.DEFINE_integer("batch", 16, "Holes per sampler call.")


def make_holes(paragraphs, vocab, seq_len, count, seed):
  """(tokens [H, N] with mask ids in the hole, valid [H, N], true line texts, hole token counts)."""
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(paragraphs))
  tokens, valid, lines, sizes = [], [], [], []
  for i in order:
    text_lines = paragraphs[i].split("\n")
    inner = [j for j in range(1, len(text_lines) - 1) if text_lines[j].strip()]
    if len([ln for ln in text_lines if ln.strip()]) < 3 or not inner:
      continue
    j = int(rng.choice(inner))
    before = vocab.encode("\n".join(text_lines[:j]) + "\n")
    line = vocab.encode(text_lines[j])
    after = vocab.encode("\n" + "\n".join(text_lines[j + 1:]))
    if not 1 <= len(line) <= min(24, seq_len // 2):
      continue
    room = seq_len - 2 - len(line)
    left = min(len(before), max(room // 2, room - len(after)))
    right = min(len(after), room - left)
    row = [vocab.cls_id] + before[len(before) - left:] + [vocab.mask_id] * len(line) + after[:right] + [vocab.sep_id]
    t = np.full(seq_len, vocab.pad_id, np.int32)
    v = np.zeros(seq_len, bool)
    t[:len(row)], v[:len(row)] = row, True
    tokens.append(t), valid.append(v), lines.append(text_lines[j]), sizes.append(len(line))
    if len(tokens) == count:
      break
  return np.stack(tokens), np.stack(valid), lines, sizes


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp

  from configs import asarm
  from decode.assd import joint_log_prob
  from decode.infill import infill_tokens
  from models.asarm import canonical_ranks
  from data.sources import corpus_from_config
  from train.restore import load_trained
  config = asarm.get_config(_CONFIG_ARG.value)
  exp, step, params = load_trained(config, _WORKDIR.value)
  params = jax.device_get(params)
  vocab, N = exp.vocab, config.data.seq_len
  held_out = corpus_from_config(config.data).validation
  tokens, valid, lines, sizes = make_holes(held_out, vocab, N, _HOLES.value, _SEED.value)
  hidden = (tokens == vocab.mask_id) & valid
  rank = canonical_ranks(jnp.asarray(~hidden))
  m = jnp.asarray(N - hidden.sum(1), jnp.int32)
  apply_fn = exp.family.module.apply

  def nll_per_token(filled, temperature=1.0):
    lp = joint_log_prob(apply_fn, params, jnp.asarray(filled), rank, m, jnp.asarray(valid), mask_id=vocab.mask_id,
                        temperature=temperature, vocab_limit=vocab.size)
    return -np.asarray(lp) / np.asarray(sizes)

  truth = tokens.copy()
  for i in range(len(truth)):
    truth[i, hidden[i]] = vocab.encode(lines[i])
  true_nll = float(nll_per_token(truth).mean())
  rows = []
  for temperature in map(float, _TEMPERATURES.value):
    for sampler in ("sequential", "assd"):
      outs, nfes = [], []
      for start in range(0, len(tokens), _BATCH.value):
        sl = slice(start, start + _BATCH.value)
        out, nfe = infill_tokens(apply_fn, params, tokens[sl], valid[sl], mask_id=vocab.mask_id, sampler=sampler,
                                 k=_K.value, temperature=temperature, seed=_SEED.value + start,
                                 vocab_limit=vocab.size)
        outs.append(out), nfes.append(nfe)
      out, nfe = np.concatenate(outs), np.concatenate(nfes)
      filled = [vocab.decode(out[i, hidden[i]]) for i in range(len(out))]
      exact = [f.strip() == ln.strip() for f, ln in zip(filled, lines)]
      row = {"sampler": sampler if sampler == "sequential" else f"ASSD k={_K.value}", "temperature": temperature,
             "exact_match": statistics.mean(exact), "sample_nll_per_token": float(nll_per_token(out).mean()),
             "nfe_per_token": float((nfe / np.asarray(sizes)).mean()), "examples": list(zip(lines, filled))[:3]}
      rows.append(row)
      print(json.dumps(row))
  print(f"\nmodel step {step}; {len(tokens)} holes of 1-24 tokens (mean {statistics.mean(sizes):.1f}) in held-out "
        f"files; context window {N} tokens; true-line NLL {true_nll:.3f} nats/token")
  print("\n| sampler | temperature | exact match | model NLL / token of the samples | NFE / hole token |"
        "\n|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['sampler']} | {r['temperature']} | {r['exact_match']:.3f} | {r['sample_nll_per_token']:.3f} | "
          f"{r['nfe_per_token']:.2f} |")
  record.write("asarm_infill", {"model_step": step, "holes": len(tokens), "mean_hole_tokens": statistics.mean(sizes),
                                "context": N, "true_line_nll_per_token": true_nll, "rows": rows})   # RESULTS.md


if __name__ == "__main__":
  app.run(main)
