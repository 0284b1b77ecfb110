"""Distortion-free EXP (Gumbel) watermark (Kuditipudi, Thickstun, Hashimoto, Liang; arXiv 2307.15593).

Key: a secret PRNG key defining n rows of V uniforms xi_0..xi_{n-1} (regenerated on demand, never stored).
Sampling: token i takes y = argmax_v log(xi_{s+i, v}) / p_v = argmax_v [log p_v - log(-log xi_{s+i, v})] (Gumbel-max
with key-derived noise), with s a random shift per sequence; over keys, each token is an exact sample of p
(distortion-free), whatever sampler chain produced p.
Detection: the alignment cost of a block of tokens to the key at shift j is sum_l log(1 - xi_{(j+l) mod n, y_l});
the statistic is its minimum over shifts (lower = watermarked). The Levenshtein variant aligns with insertions
and deletions at cost gamma. p-value: permutation test against T fresh keys, p = (1 + #{null <= observed}) / (T + 1)
(the +1 keeps P(p <= alpha) <= alpha exactly; the authors' detection.py omits it).
"""
import dataclasses
from functools import partial

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class WatermarkConfig:
  seed: int          # the secret
  n: int = 256       # key length (rows of uniforms)


def key_uniforms(seed: int | jax.Array, rows: jax.Array, vocab_size: int) -> jax.Array:
  """xi[rows] for the key `seed`: [..., V] uniforms in (0, 1)."""
  base = jax.random.PRNGKey(seed)
  flat = rows.reshape(-1)
  u = jax.vmap(lambda r: jax.random.uniform(jax.random.fold_in(base, r), (vocab_size,), minval=1e-12,
                                            maxval=1.0))(flat)
  return u.reshape(rows.shape + (vocab_size,))


def watermark_sample(logits: jax.Array, xi: jax.Array) -> jax.Array:
  """argmax_v log p_v - log(-log xi_v) over the last axis; logits may contain -inf (truncated tokens)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.argmax(logp - jnp.log(-jnp.log(xi)), axis=-1)


def alignment_costs(tokens: jax.Array, seed: int | jax.Array, vocab_size: int, n: int) -> jax.Array:
  """c[j, l] = log(1 - xi_{(j + l) mod n, y_l}) for every shift j < n and token l: [n, m]."""
  m = tokens.shape[0]
  xi = key_uniforms(seed, jnp.arange(n), vocab_size)                 # [n, V]
  rows = (jnp.arange(n)[:, None] + jnp.arange(m)[None, :]) % n       # [n, m]
  return jnp.log1p(-xi[rows, tokens[None, :]])


def statistic(tokens: jax.Array, seed: int | jax.Array, vocab_size: int, n: int) -> jax.Array:
  """min over shifts of the summed alignment cost of the whole text (lower = more watermarked)."""
  return jnp.min(jnp.sum(alignment_costs(tokens, seed, vocab_size, n), axis=1))


def levenshtein_cost(costs: jax.Array, gamma: float) -> jax.Array:
  """Edit-distance alignment of m tokens to m key rows: substitution cost costs[l, j] (token l, key row j),
  insertion/deletion gamma. Rows are a lax.scan; the in-row recurrence uses the min-plus cummin trick."""
  m, w = costs.shape
  j = jnp.arange(w + 1, dtype=jnp.float32)
  first = j * gamma

  def row(prev, c_l):
    i = prev[0] + gamma
    b = jnp.minimum(prev[1:] + gamma, prev[:-1] + c_l)           # from above, or diagonal
    b = jnp.concatenate([i[None], b])
    out = j * gamma + jax.lax.cummin(b - j * gamma)               # then horizontal moves
    return out, None

  last, _ = jax.lax.scan(row, first, costs)
  return last[-1]


def statistic_edit(tokens: jax.Array, seed: int | jax.Array, vocab_size: int, n: int,
                   gamma: float = 0.4) -> jax.Array:
  """Levenshtein variant, robust to insertions and deletions: min over shifts of the edit alignment cost."""
  m = tokens.shape[0]
  xi = key_uniforms(seed, jnp.arange(n), vocab_size)

  def at_shift(s):
    rows = (s + jnp.arange(m)) % n
    return levenshtein_cost(jnp.log1p(-xi[rows][:, tokens].T), gamma)

  return jnp.min(jax.vmap(at_shift)(jnp.arange(n)))


@partial(jax.jit, static_argnames=("vocab_size", "n", "edit", "gamma"))
def _observed_and_null(tokens, seed, null_seeds, vocab_size, n, edit, gamma):
  stat = (lambda k: statistic_edit(tokens, k, vocab_size, n, gamma)) if edit else (
      lambda k: statistic(tokens, k, vocab_size, n))
  return stat(seed), jax.lax.map(stat, null_seeds)


def p_value(tokens, seed: int, vocab_size: int, n: int = 256, num_null: int = 200,
            null_seed: int = 1_000_003, edit: bool = False, gamma: float = 0.4) -> float:
  """Permutation test: the observed statistic against the same statistic under `num_null` fresh keys."""
  observed, null = _observed_and_null(jnp.asarray(tokens), seed, null_seed + jnp.arange(num_null), vocab_size, n,
                                      edit, gamma)
  return float((1 + jnp.sum(null <= observed)) / (num_null + 1))
