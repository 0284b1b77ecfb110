"""ASSD samples exactly from an AS-ARM's joint; naive parallel sampling does not. Exact enumeration + chi-square.

  python -m bench.assd_exactness --vocab 4 --length 6 --prompt 2 --k 3 --samples 20000 --seed 0

Builds a random tiny AS-ARM (2 layers, d 32; weights drawn at --init_scale so its conditionals are peaked and
depend on each other: untrained weights are fine, the target is the model's own joint along the canonical order),
picks a random prompt of --prompt visible positions, enumerates the joint of the other positions exactly (one
batched density pass over all vocab^(length - prompt) completions), then draws --samples samples with ASSD (k
drafts per round) and as many with naive parallel sampling (every token from its draft marginal in one call).
For each: total-variation distance to the exact joint and Pearson's chi-square p-value (cells with expected
count < 5 pooled). The last line reads
  assd_tv=... assd_p=... parallel_tv=... parallel_p=... nfe_per_token=...
"""
import json

from absl import app, flags

from bench import record
from decode.assd_exact import exactness  # the oracle lives in the library (tests use it too)

_VOCAB = flags.DEFINE_integer("vocab", 4, "Real tokens (the mask token is one more id).")
_LENGTH = flags.DEFINE_integer("length", 6, "Sequence length N.")
_PROMPT = flags.DEFINE_integer("prompt", 2, "Visible positions M.")
_K = flags.DEFINE_integer("k", 3, "Drafts per ASSD round.")
_SAMPLES = flags.DEFINE_integer("samples", 20000, "Samples per sampler.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the model, prompt and samplers.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (both passes).")
_INIT_SCALE = flags.DEFINE_float("init_scale", 0.6, "Std of the random weights (larger: peakier conditionals).")
_CACHE = flags.DEFINE_boolean("cache", False, "ASSD over the rank cache (decode/assd_cached.py).")


def main(argv):
  del argv
  r = exactness(_VOCAB.value, _LENGTH.value, _PROMPT.value, _K.value, _SAMPLES.value, _SEED.value,
                _TEMPERATURE.value, _INIT_SCALE.value, cache=_CACHE.value)
  print(json.dumps(r))
  record.write("assd_exactness", r)   # an exactness check (RESULTS.md): no headline
  print(" ".join(f"{k}={r[k]:.4g}" for k in ("assd_tv", "assd_p", "parallel_tv", "parallel_p", "nfe_per_token")))


if __name__ == "__main__":
  app.run(main)
