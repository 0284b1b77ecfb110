"""AriEL's exactness and precision on a random prefix-tree oracle LM (ariel.md §6.1, data/sentences.py).

  python -m bench.ariel_roundtrip --d 16 --dtype float64 --maxlen 6 --seed 0

Enumerates the oracle's whole finite language (EOS allowed from --min_len words, forced after --maxlen words),
encodes and decodes every sentence in one batch, and prints the fraction recovered and the sum of the box volumes
(1 when the boxes tile the cube). With --samples N (the precision fixture: --min_len 30 --maxlen 40) it codes N
ancestral samples instead of enumerating. The last line is `roundtrip=<fraction> volume_sum=<sum> sentences=<n>
flagged=<sentences encode reported as not representable> lost_unflagged=<sentences that failed to round-trip without
being reported>` (lost_unflagged must be 0).
"""
import time
import warnings

from absl import app, flags

from bench import record

_D = flags.DEFINE_integer("d", 16, "latent dimensions")
_DTYPE = flags.DEFINE_enum("dtype", "float64", ["float32", "float64"], "coder precision")
_MAXLEN = flags.DEFINE_integer("maxlen", 6, "words after which EOS is forced")
_MIN_LEN = flags.DEFINE_integer("min_len", 2, "words before which EOS is forbidden")
_SEED = flags.DEFINE_integer("seed", 0, "the oracle's draws (and the samples')")
_SAMPLES = flags.DEFINE_integer("samples", 0, "code this many ancestral samples instead of the whole language")


def main(argv):
  del argv
  import numpy as np

  from data import sentences as S
  from decode import ariel
  if _SAMPLES.value:
    oracle = S.prefix_tree_oracle(_SEED.value, min_len=_MIN_LEN.value, maxlen=_MAXLEN.value)
    sents = oracle.sample(np.random.default_rng(_SEED.value), _SAMPLES.value)
    tokens = np.zeros((len(sents), max(map(len, sents))), np.int32)
    for i, s in enumerate(sents):
      tokens[i, :len(s)] = s
  else:
    language = S.prefix_tree(_SEED.value, min_len=_MIN_LEN.value, maxlen=_MAXLEN.value)
    oracle, tokens = language.oracle(), language.padded()
  lm = ariel.oracle(oracle)
  t = time.perf_counter()
  with warnings.catch_warnings():   # counted below instead
    warnings.simplefilter("ignore", RuntimeWarning)
    z, (lo, hi) = ariel.encode(lm, None, tokens, _D.value, dtype=_DTYPE.value)
  flagged = ~ariel.representable(z, lo, hi)
  decoded = ariel.decode(lm, None, z, tokens.shape[1], dtype=_DTYPE.value)
  seconds = time.perf_counter() - t
  ok = (decoded == tokens).all(axis=1)
  volume = np.prod(hi.astype(np.float64) - lo.astype(np.float64), axis=1)
  print(f"d={_D.value} dtype={_DTYPE.value} maxlen={_MAXLEN.value} min_len={_MIN_LEN.value} seed={_SEED.value}: "
        f"{int(ok.sum())}/{len(ok)} recovered, {tokens.shape[1]} positions, {oracle.calls[0]} batched oracle calls, "
        f"{seconds:.2f} s (with compilation); empty boxes {int((volume == 0).sum())}")
  record.write("ariel_roundtrip", {  # an exactness check (RESULTS.md): no reference, no headline
      "d": _D.value, "dtype": _DTYPE.value, "maxlen": _MAXLEN.value, "min_len": _MIN_LEN.value, "seed": _SEED.value,
      "samples": _SAMPLES.value, "roundtrip": float(ok.mean()), "volume_sum": float(volume.sum()),
      "sentences": len(ok), "flagged": int(flagged.sum()), "lost_unflagged": int((~ok & ~flagged).sum()),
      "empty_boxes": int((volume == 0).sum()), "oracle_calls": int(oracle.calls[0]), "seconds": seconds})
  print(f"roundtrip={ok.mean():.6f} volume_sum={volume.sum():.12f} sentences={len(ok)} flagged={int(flagged.sum())} "
        f"lost_unflagged={int((~ok & ~flagged).sum())}")


if __name__ == "__main__":
  app.run(main)
