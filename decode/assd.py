"""Sampling from an any-subset AR model: sequential decoding, Any-Subset Speculative Decoding (ASSD), and naive
parallel sampling (the negative control), all jitted `lax.while_loop`s over an explicit state.

The target is the model's own joint along the canonical order: prod_i p(x_sigma(i) | x_sigma(<i)) at
`temperature`, with the mask token (and ids >= vocab_limit) removed and the rest renormalised (both passes).
ASSD (Guo & Ermon 2025) per round, for each row with n < N decoded ranks and k' = min(k, N - n):
  draft pass: queries at sigma(n..n+k'-1) reading x_sigma(<n) only -> q_i; draws x~_i ~ q_i independently;
  verify pass: the drafts written in, queries reading x_sigma(<i) -> p_i (skipped when k' = 1);
  accept x~_i while u < p_i(x~_i) / q_i(x~_i) (the first draft always: p = q there); at the first rejection draw
  from the residual (p_i - q_i)+ (from p_i if it vanishes numerically) and discard later drafts. No bonus token.
Each round costs 2 network calls (1 for a final single token) and writes >= 2 tokens when k' >= 2, so the number
of calls (NFE) never exceeds the number of generated tokens. Rows of a batch advance independently (per-row n and
NFE); a batch's call serves every unfinished row. No KV cache on any path, so NFE ratios are wall-clock ratios.
Draws use models/layers/categorical.inverse_cdf_categorical (one uniform per row; the categorical law, cheaper on
CPU than Gumbel-max over the vocabulary).
"""
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from models.asarm.model import banned_log_probs
from models.layers.categorical import inverse_cdf_categorical


def _rows(x):
  return jnp.arange(x.shape[0])[:, None]


def _scatter(tokens_BN, pos_BK, values_BK, write_BK):
  """tokens with tokens[b, pos] = value where write (unwritten slots dropped, so duplicate pads never clash)."""
  N = tokens_BN.shape[1]
  return tokens_BN.at[_rows(pos_BK), jnp.where(write_BK, pos_BK, N)].set(values_BK.astype(tokens_BN.dtype),
                                                                          mode="drop")


def _hidden_slots(rank_BN, m_B):
  """Every generated rank at once: (positions [B, N] in generation order, their ranks, which slots are real)."""
  N = rank_BN.shape[1]
  slot_BN = jnp.minimum(m_B[:, None] + jnp.arange(N)[None], N - 1)
  pos_BN = jnp.take_along_axis(jnp.argsort(rank_BN, axis=-1), slot_BN, axis=1)
  return pos_BN, slot_BN, jnp.arange(N)[None] < (N - m_B)[:, None]


def _start(tokens_BN, rank_BN, m_B, mask_id):
  """Hidden positions get the mask token; returns (tokens, rank -> position table)."""
  tokens_BN = jnp.where(rank_BN < m_B[:, None], tokens_BN, mask_id).astype(jnp.int32)
  return tokens_BN, jnp.argsort(rank_BN, axis=-1)


def accept_and_resample(logq, logp, drafts_BK, valid_BK, kp_B, r_accept, r_resid):
  """One ASSD round's verdict: accept draft i while u < p_i/q_i (the first always), draw from (p - q)+ (p if it
  vanishes) at the first rejection j. Returns (values to write [B, K], j [B] = first rejected or k', whether a draft
  was rejected [B], the resampled slot [B, K])."""
  B, k = drafts_BK.shape
  t_K = jnp.arange(k)
  lq_x = jnp.take_along_axis(logq, drafts_BK[..., None], -1)[..., 0]
  lp_x = jnp.take_along_axis(logp, drafts_BK[..., None], -1)[..., 0]
  u_BK = jax.random.uniform(r_accept, (B, k))
  accept_BK = (t_K[None] == 0) | (u_BK < jnp.exp(lp_x - lq_x))
  rejected_BK = valid_BK & ~accept_BK
  has_rej_B = rejected_BK.any(axis=1)
  j_B = jnp.where(has_rej_B, jnp.argmax(rejected_BK, axis=1), kp_B)
  j_safe = jnp.minimum(j_B, k - 1)
  p_V = jnp.exp(jnp.take_along_axis(logp, j_safe[:, None, None], 1)[:, 0])
  q_V = jnp.exp(jnp.take_along_axis(logq, j_safe[:, None, None], 1)[:, 0])
  resid_V = jnp.maximum(p_V - q_V, 0.0)
  resid_V = jnp.where(resid_V.sum(-1, keepdims=True) > 1e-12, resid_V, p_V)
  resampled_B = inverse_cdf_categorical(r_resid, jnp.log(resid_V))
  at_j = (t_K[None] == j_B[:, None]) & has_rej_B[:, None]
  return jnp.where(at_j, resampled_B[:, None], drafts_BK), j_B, has_rej_B, at_j


@partial(jax.jit, static_argnames=("apply_fn", "k", "mask_id", "temperature", "vocab_limit"))
def assd_sample(apply_fn, params: Any, tokens_BN: jax.Array, rank_BN: jax.Array, m_B: jax.Array, rng: jax.Array,
                valid_BN: jax.Array | None = None, *, k: int, mask_id: int, temperature: float = 1.0,
                vocab_limit: int | None = None
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """ASSD with k drafts per round. Returns (tokens [B, N], nfe [B], rounds [B]). Generated: rank >= m."""
  if k < 1:
    raise ValueError(f"k={k}: ASSD needs at least one draft per round")
  B, N = tokens_BN.shape
  tokens_BN, order_BN = _start(tokens_BN, rank_BN, m_B, mask_id)
  t_K = jnp.arange(k)

  def log_probs(tokens, pos, limit):
    return banned_log_probs(apply_fn({"params": params}, tokens, rank_BN, m_B, pos, limit, valid_BN), mask_id,
                            temperature, vocab_limit)

  def body(state):
    tokens, n_B, nfe_B, rounds_B, key = state
    key, r_draft, r_accept, r_resid = jax.random.split(key, 4)
    active_B = n_B < N
    kp_B = jnp.minimum(k, N - n_B)
    slot_rank_BK = jnp.minimum(n_B[:, None] + t_K[None], N - 1)
    pos_BK = jnp.take_along_axis(order_BN, slot_rank_BK, axis=1)
    valid_BK = (t_K[None] < kp_B[:, None]) & active_B[:, None]
    logq = log_probs(tokens, pos_BK, jnp.broadcast_to(n_B[:, None], (B, k)))          # draft pass
    drafts_BK = inverse_cdf_categorical(r_draft, logq)
    need_verify = jnp.any(valid_BK[:, 1:])
    logp = jax.lax.cond(need_verify,                                                    # verify pass
                        lambda: log_probs(_scatter(tokens, pos_BK, drafts_BK, valid_BK), pos_BK, slot_rank_BK),
                        lambda: logq)
    values_BK, j_B, has_rej_B, at_j = accept_and_resample(logq, logp, drafts_BK, valid_BK, kp_B, r_accept, r_resid)
    write_BK = valid_BK & ((t_K[None] < j_B[:, None]) | at_j)
    tokens = _scatter(tokens, pos_BK, values_BK, write_BK)
    written_B = jnp.where(has_rej_B, j_B + 1, kp_B)
    n_B = jnp.where(active_B, n_B + written_B, n_B)
    nfe_B = nfe_B + jnp.where(active_B, jnp.where(kp_B > 1, 2, 1), 0)
    rounds_B = rounds_B + active_B
    return tokens, n_B, nfe_B, rounds_B, key

  zeros = jnp.zeros((B,), jnp.int32)
  state = (tokens_BN, m_B.astype(jnp.int32), zeros, zeros, rng)
  tokens, _, nfe_B, rounds_B, _ = jax.lax.while_loop(lambda s: jnp.any(s[1] < N), body, state)
  return tokens, nfe_B, rounds_B


@partial(jax.jit, static_argnames=("apply_fn", "mask_id", "temperature", "vocab_limit"))
def sequential_sample(apply_fn, params: Any, tokens_BN: jax.Array, rank_BN: jax.Array, m_B: jax.Array,
                      rng: jax.Array, valid_BN: jax.Array | None = None, *, mask_id: int,
                      temperature: float = 1.0, vocab_limit: int | None = None
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One network call per generated token along the order (the exact baseline). Returns (tokens, nfe, nfe)."""
  B, N = tokens_BN.shape
  tokens_BN, order_BN = _start(tokens_BN, rank_BN, m_B, mask_id)

  def body(state):
    tokens, n_B, nfe_B, key = state
    key, r = jax.random.split(key)
    active_B = n_B < N
    slot_B1 = jnp.minimum(n_B, N - 1)[:, None]
    pos_B1 = jnp.take_along_axis(order_BN, slot_B1, axis=1)
    logp = banned_log_probs(apply_fn({"params": params}, tokens, rank_BN, m_B, pos_B1, slot_B1, valid_BN),
                            mask_id, temperature, vocab_limit)
    tokens = _scatter(tokens, pos_B1, inverse_cdf_categorical(r, logp), active_B[:, None])
    return tokens, n_B + active_B, nfe_B + active_B, key

  state = (tokens_BN, m_B.astype(jnp.int32), jnp.zeros((B,), jnp.int32), rng)
  tokens, _, nfe_B, _ = jax.lax.while_loop(lambda s: jnp.any(s[1] < N), body, state)
  return tokens, nfe_B, nfe_B


@partial(jax.jit, static_argnames=("apply_fn", "mask_id", "temperature", "vocab_limit"))
def parallel_sample(apply_fn, params: Any, tokens_BN: jax.Array, rank_BN: jax.Array, m_B: jax.Array,
                    rng: jax.Array, valid_BN: jax.Array | None = None, *, mask_id: int,
                    temperature: float = 1.0, vocab_limit: int | None = None
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Every hidden token from its draft marginal in one call: NOT the joint (the negative control)."""
  B, N = tokens_BN.shape
  tokens_BN, _ = _start(tokens_BN, rank_BN, m_B, mask_id)
  pos_BN, _, slot_valid_BN = _hidden_slots(rank_BN, m_B)
  logq = banned_log_probs(apply_fn({"params": params}, tokens_BN, rank_BN, m_B, pos_BN,
                                   jnp.broadcast_to(m_B[:, None], (B, N)), valid_BN), mask_id, temperature,
                          vocab_limit)
  tokens = _scatter(tokens_BN, pos_BN, inverse_cdf_categorical(rng, logq), slot_valid_BN)
  nfe_B = jnp.ones((B,), jnp.int32)
  return tokens, nfe_B, nfe_B


@partial(jax.jit, static_argnames=("apply_fn", "mask_id", "temperature", "vocab_limit"))
def joint_log_prob(apply_fn, params: Any, tokens_BN: jax.Array, rank_BN: jax.Array, m_B: jax.Array,
                   valid_BN: jax.Array | None = None, *, mask_id: int, temperature: float = 1.0,
                   vocab_limit: int | None = None) -> jax.Array:
  """log prod_i p(x_sigma(i) | x_sigma(<i)) of complete sequences in one density pass per row: [B]."""
  pos_BN, slot_BN, slot_valid_BN = _hidden_slots(rank_BN, m_B)
  logp = banned_log_probs(apply_fn({"params": params}, tokens_BN, rank_BN, m_B, pos_BN, slot_BN, valid_BN),
                          mask_id, temperature, vocab_limit)
  lp_BN = jnp.take_along_axis(logp, jnp.take_along_axis(tokens_BN, pos_BN, 1)[..., None], -1)[..., 0]
  return jnp.sum(jnp.where(slot_valid_BN, lp_BN, 0.0), axis=1)
