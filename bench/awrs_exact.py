"""AWRS (decode/constrained.py) against enumeration: random next-token laws p over V tokens and random constraints
c, every ordering of the vocabulary with its Plackett-Luce probability: the law of the returned token against
p c / Z and the mean of exp(weight) against Z (the normaliser the weight estimates), plus the constraint reads per
step against full masking's V.

  python -m bench.awrs_exact --vocab 6 --seed 0 [--cases 100]

The last line: `awrs_max_err=<x> weight_rel_bias=<y> orderings=<n>`.
"""
import itertools

import numpy as np
from absl import app, flags

from bench import record

_VOCAB = flags.DEFINE_integer("vocab", 6, "Vocabulary size (every one of its V! orderings is enumerated).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the laws and constraints.")
_CASES = flags.DEFINE_integer("cases", 100, "Random (p, c) cases.")


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp

  from decode.constrained import awrs_from_order, plackett_luce_probability
  V, rng = _VOCAB.value, np.random.default_rng(_SEED.value)
  orders = np.array(list(itertools.permutations(range(V))), np.int32)
  run = jax.jit(jax.vmap(awrs_from_order, in_axes=(None, None, 0)))
  max_err = max_bias = 0.0
  reads = []
  n = 0
  for _ in range(_CASES.value):
    p = rng.dirichlet(np.full(V, rng.choice([0.3, 1.0, 3.0])))
    c = rng.random(V) < 0.5
    if not c.any():
      continue
    tok, logw, calls = jax.device_get(run(jnp.log(jnp.asarray(p, jnp.float32)), jnp.asarray(c), orders))
    prob = np.array([plackett_luce_probability(o, p) for o in orders])
    law, weight = np.zeros(V), 0.0
    np.add.at(law, tok, prob * np.isfinite(logw))
    weight = float((prob * np.exp(logw)).sum())
    z = float((p * c).sum())
    max_err = max(max_err, float(np.abs(law - p * c / z).max()))
    max_bias = max(max_bias, abs(weight - z) / z)
    reads.append(float((prob * calls).sum()))
    n += 1
  figures = {"vocab": V, "seed": _SEED.value, "cases": n, "orderings_per_case": len(orders),
             "awrs_max_err": max_err, "weight_rel_bias": max_bias, "mean_constraint_reads": float(np.mean(reads)),
             "masking_reads": V}
  record.write(f"awrs_exact_v{V}", figures, note="exactness (float32 JAX); reads per step against masking's V")
  print(f"awrs_max_err={max_err:.3g} weight_rel_bias={max_bias:.3g} orderings={n * len(orders)}", flush=True)


if __name__ == "__main__":
  app.run(main)
