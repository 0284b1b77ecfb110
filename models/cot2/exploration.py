"""Exploration policies of CoT2's policy optimisation (Gozeten et al. 2025 §5): what a thought step feeds back
and the log-probability of that choice, for the GRPO ratio.

  mts        multi-token sampling: K tokens drawn with replacement from softmax(logits / K) (`normalize`, the
             official default) or softmax(logits); the fed mixture is their mean one-hot (K = 1 without
             normalisation: ordinary discrete CoT sampling); log-prob = the sum of the K draws' log-probs.
  dirichlet  support U = {v : p(v) >= floor} of p = softmax(logits) (the official union of old and new supports:
             one set, since old = current parameters); p clamped to the floor on U and renormalised; w ~ Dir(scale
             * p|U); the fed mixture is w; log-prob = log Dir(w; scale * p|U).

Both return the log-probability as a differentiable function of the logits at a fixed (stop-gradient) choice,
so the ratio exp(logp - stop_gradient(logp)) is 1 in value with gradient grad logp.
Legend: B rows, K draws, V vocabulary.
"""
import jax
import jax.numpy as jnp


def mts_probs(logits_BV: jax.Array, k: int, normalize: bool) -> jax.Array:
  return jax.nn.softmax(logits_BV / k if normalize else logits_BV, axis=-1)


def mts_sample(key: jax.Array, probs_BV: jax.Array, k: int) -> jax.Array:
  """[B, K] token ids, K draws with replacement from each row."""
  logp = jnp.log(jax.lax.stop_gradient(probs_BV))
  return jax.random.categorical(key, logp, axis=-1, shape=(k, probs_BV.shape[0])).T


def mts_logprob(probs_BV: jax.Array, tokens_BK: jax.Array) -> jax.Array:
  """[B]: sum over the K draws of log p (the probability of the ordered draw sequence)."""
  return jnp.sum(jnp.log(jnp.take_along_axis(probs_BV, tokens_BK, axis=-1) + 1e-30), axis=-1)


def mts_mixture(tokens_BK: jax.Array, vocab_size: int) -> jax.Array:
  """[B, V]: the mean one-hot of the K draws (its product with W_E is the mean of the K embeddings)."""
  return jnp.mean(jax.nn.one_hot(tokens_BK, vocab_size, dtype=jnp.float32), axis=1)


def dirichlet_alpha(logits_BV: jax.Array, floor: float, scale: float) -> tuple[jax.Array, jax.Array]:
  """(alpha [B, V], 0 off the support; support [B, V] bool). The support follows stop_gradient(p)."""
  p = jax.nn.softmax(logits_BV, axis=-1)
  support = jax.lax.stop_gradient(p) >= floor
  clamped = jnp.where(support, jnp.maximum(p, floor), 0.0)
  return scale * clamped / jnp.sum(clamped, axis=-1, keepdims=True), support


def dirichlet_sample(key: jax.Array, alpha_BV: jax.Array, support_BV: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(w [B, V] on the simplex, 0 off the support; log w [B, V], finite on the support). Log-gamma draws keep
  concentrations << 1 from underflowing to an all-zero row."""
  a = jnp.where(support_BV, jax.lax.stop_gradient(alpha_BV), 1.0)
  g = jnp.where(support_BV, jax.random.loggamma(key, a), -jnp.inf)
  log_w = jax.nn.log_softmax(g, axis=-1)
  return jnp.exp(log_w), jnp.where(support_BV, log_w, 0.0)


def dirichlet_logprob(alpha_BV: jax.Array, support_BV: jax.Array, log_w_BV: jax.Array) -> jax.Array:
  """[B]: log Dir(w; alpha) over the support: lgamma(sum alpha) - sum lgamma(alpha) + sum (alpha - 1) log w."""
  a = jnp.where(support_BV, alpha_BV, 1.0)
  total = jnp.sum(jnp.where(support_BV, alpha_BV, 0.0), axis=-1)
  lg = jnp.where(support_BV, jax.scipy.special.gammaln(a), 0.0)
  return jax.scipy.special.gammaln(total) - jnp.sum(lg, -1) + jnp.sum(jnp.where(support_BV, (a - 1) * log_w_BV, 0),
                                                                      -1)


def group_advantages(rewards_GR: jax.Array) -> jax.Array:
  """(r - mean) / max(std, 1e-12) over each group's R rollouts (population std, as numpy's)."""
  mean = jnp.mean(rewards_GR, axis=-1, keepdims=True)
  std = jnp.std(rewards_GR, axis=-1, keepdims=True)
  return (rewards_GR - mean) / jnp.maximum(std, 1e-12)


def clipped_surrogate(ratio: jax.Array, advantage: jax.Array, epsilon: float) -> jax.Array:
  """PPO's min(rho A, clip(rho, 1 - eps, 1 + eps) A)."""
  return jnp.minimum(ratio * advantage, jnp.clip(ratio, 1 - epsilon, 1 + epsilon) * advantage)
