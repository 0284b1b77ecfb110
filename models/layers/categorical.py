"""Categorical draws by inverse CDF: the law of `jax.random.categorical` at one uniform per row.

Shared by the ELECTRA objective (replacement tokens from the generator) and decode/ (ASSD drafts and residuals).
"""
import jax
import jax.numpy as jnp


def _first_or_last(cond, fallback):
  """Index of the first True of `cond` along the last axis, else of the last True of `fallback`."""
  last = fallback.shape[-1] - 1 - jnp.argmax(fallback[..., ::-1], axis=-1)
  return jnp.where(cond.any(-1), jnp.argmax(cond, axis=-1), last)


def inverse_cdf_categorical(key: jax.Array | None, log_probs: jax.Array, block: int = 64, *,
                            uniform: jax.Array | None = None) -> jax.Array:
  """Draws ids [...] from (unnormalised) log-probabilities [..., V]: the law of `jax.random.categorical`, not its
  draws, for a fraction of its cost where a call draws from a few rows of a large vocabulary on CPU.

  One uniform per row against the cumulative distribution (Gumbel-max draws V uniforms and 2V logarithms per row,
  and on CPU threefry runs as a rolled loop: 7x slower for 5 x 4,096 on our CPU, BENCHMARKS.md). The row is read
  twice (its maximum, then its block masses in one fused pass); cumulative sums are small triangular products,
  over the blocks and within the chosen block only (XLA's cumsum lowering is a long chain of reduce-windows).
  Only ids of positive mass can be drawn (an -inf id never is, whatever the rounding of the sums: the search is
  confined to blocks and ids of positive mass). `uniform` [...] in [0, 1) replaces the draw from `key` (a caller
  that draws its noise for a whole batch at once, e.g. an objective's `prepare`, before gradient accumulation).
  """
  V = log_probs.shape[-1]
  nb = -(-V // block)
  lp = log_probs.astype(jnp.float32)
  top = jnp.max(lp, axis=-1, keepdims=True)
  # block masses in one fused pass over the row; the probabilities are never stored
  p = jnp.pad(jnp.exp(lp - top), [(0, 0)] * (lp.ndim - 1) + [(0, nb * block - V)])
  bsum = p.reshape(p.shape[:-1] + (nb, block)).sum(-1)
  bcdf = jnp.matmul(bsum, jnp.triu(jnp.ones((nb, nb), jnp.float32)), precision="highest")
  u = jax.random.uniform(key, log_probs.shape[:-1], jnp.float32) if uniform is None else uniform
  t = u * bcdf[..., -1]
  b = _first_or_last((bcdf > t[..., None]) & (bsum > 0), bsum > 0)
  ids = b[..., None] * block + jnp.arange(block)                                    # the chosen block's ids
  row_p = jnp.where(ids < V, jnp.exp(jnp.take_along_axis(lp, jnp.minimum(ids, V - 1), axis=-1) - top), 0.0)
  row_within = jnp.matmul(row_p, jnp.triu(jnp.ones((block, block), jnp.float32)), precision="highest")  # inclusive
  mass_before = (jnp.take_along_axis(bcdf, b[..., None], axis=-1) - jnp.take_along_axis(bsum, b[..., None], axis=-1))
  # rounding may leave t just past the block's last sum: the fallback then takes its last id of positive mass
  i = _first_or_last((row_within > t[..., None] - mass_before) & (row_p > 0), row_p > 0)
  return (b * block + i).astype(jnp.int32)
