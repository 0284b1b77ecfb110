"""Cached any-subset decoding: sequential decoding and ASSD over a key/value cache indexed by rank.

The same samplers as decode/assd.py (same target, same accept/resample rule, same random draws per round), but
each network call encodes only what is new (AsArm.cached): a decoded token's content state reads only lower
ranks, so it is final once computed, and slot r of the cache holds the keys and values of the token of rank r.
Per row: `n` ranks are decoded, `done` <= n of them have final cache entries; the rest (at most one: the token
sampled last, or the resampled token of an ASSD round) are "pending" and ride along as content in the next call.

  prefill: the first call (of a sequential step or an ASSD draft pass) takes the whole row as content (the prompt
    bidirectional) with no cache, and keeps the prompt's entries.
  sequential step: [pending content | query sigma(n), limit n]; the pending entry is kept.
  ASSD round: draft call [pending | k draft queries, limit n] (the pending entry kept), then the verify call
    [k drafts as content | k queries, limits n..n+k-1]; the entries of the accepted drafts are kept (they read
    only accepted tokens), a resampled token becomes pending.
The calls are the uncached path's, one for one (the same NFE and rounds), each smaller.
Batches advance per row (per-row n, done and NFE). The uncached samplers stay the oracle: tests check both paths
against enumeration and the cached logits against the uncached ones at every step.
Letters: B batch, N row length (= cache slots), L layers, H heads, D head dim, K drafts, V vocabulary.
"""
from functools import partial
from typing import Any

import flax
import jax
import jax.numpy as jnp

from decode.assd import _rows, _scatter, _start, accept_and_resample
from models.asarm.model import banned_log_probs


@flax.struct.dataclass
class RankCache:
  """k, v: [L, B, N, H, D] by rank slot; readable_BN: slot entries that are final and real (not padding)."""
  k: jax.Array
  v: jax.Array
  readable_BN: jax.Array

  def write(self, k_LBPHD: jax.Array, v_LBPHD: jax.Array, rank_BP: jax.Array, keep_BP: jax.Array) -> "RankCache":
    N = self.k.shape[2]
    slot_BP = jnp.where(keep_BP, rank_BP, N)            # dropped where not kept
    k = self.k.at[:, _rows(rank_BP), slot_BP].set(k_LBPHD.astype(self.k.dtype), mode="drop")
    v = self.v.at[:, _rows(rank_BP), slot_BP].set(v_LBPHD.astype(self.v.dtype), mode="drop")
    readable = self.readable_BN.at[_rows(rank_BP), slot_BP].set(True, mode="drop")
    return RankCache(k, v, readable)


def _model_dims(apply_fn):
  cfg = apply_fn.__self__.cfg                           # apply_fn: an AsArm module's bound `apply`
  return cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.compute_dtype


def _prefill(apply_fn, params, tokens_BN, rank_BN, m_B, valid_BN, query_pos_BQ, query_limit_BQ):
  """The first call: the whole row as content (the prompt's entries are kept) and the first queries.
  Returns (logits [B, Q, V], cache)."""
  B, N = tokens_BN.shape
  L, H, D, dtype = _model_dims(apply_fn)
  empty = jnp.zeros((L, B, 0, H, D), dtype)
  prompt_BN = (rank_BN < m_B[:, None]) & valid_BN
  logits, (k, v) = apply_fn({"params": params}, empty, empty, jnp.zeros((B, 0), bool), tokens_BN, rank_BN,
                            jnp.broadcast_to(jnp.arange(N), (B, N)), prompt_BN, m_B, query_pos_BQ, query_limit_BQ,
                            method="cached")
  cache = RankCache(jnp.zeros((L, B, N, H, D), dtype), jnp.zeros((L, B, N, H, D), dtype), jnp.zeros((B, N), bool))
  return logits, cache.write(k, v, rank_BN, prompt_BN)


def _call(apply_fn, params, cache, tokens_BP, rank_BP, pos_BP, live_BP, m_B, query_pos_BQ, query_limit_BQ):
  return apply_fn({"params": params}, cache.k, cache.v, cache.readable_BN, tokens_BP, rank_BP, pos_BP, live_BP, m_B,
                  query_pos_BQ, query_limit_BQ, method="cached")


def _pending(tokens, order_BN, n_B, done_B):
  """The (at most one) decoded token without a final cache entry: its token, rank, position, and whether it is."""
  N = tokens.shape[1]
  rank_B1 = jnp.clip(n_B - 1, 0, N - 1)[:, None]
  pos_B1 = jnp.take_along_axis(order_BN, rank_B1, axis=1)
  return jnp.take_along_axis(tokens, pos_B1, axis=1), rank_B1, pos_B1, (done_B < n_B)[:, None]


def _valid(tokens_BN, valid_BN):
  return jnp.ones(tokens_BN.shape, bool) if valid_BN is None else valid_BN.astype(bool)


@partial(jax.jit, static_argnames=("apply_fn", "mask_id", "temperature", "vocab_limit"))
def sequential_sample_cached(apply_fn, params: Any, tokens_BN: jax.Array, rank_BN: jax.Array, m_B: jax.Array,
                             rng: jax.Array, valid_BN: jax.Array | None = None, *, mask_id: int,
                             temperature: float = 1.0, vocab_limit: int | None = None
                             ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """decode/assd.py sequential_sample over the rank cache. Returns (tokens, nfe, nfe)."""
  B, N = tokens_BN.shape
  valid_BN = _valid(tokens_BN, valid_BN)
  tokens_BN, order_BN = _start(tokens_BN, rank_BN, m_B, mask_id)
  m_B = m_B.astype(jnp.int32)

  def step(state, first: bool):
    tokens, cache, n_B, done_B, nfe_B, key = state
    key, r = jax.random.split(key)
    active_B = n_B < N
    slot_B1 = jnp.minimum(n_B, N - 1)[:, None]
    pos_B1 = jnp.take_along_axis(order_BN, slot_B1, axis=1)
    if first:                        # the prefill is the first step's call
      logits, cache = _prefill(apply_fn, params, tokens, rank_BN, m_B, valid_BN, pos_B1, slot_B1)
    else:
      tok_B1, prank_B1, ppos_B1, live_B1 = _pending(tokens, order_BN, n_B, done_B)
      logits, (k, v) = _call(apply_fn, params, cache, tok_B1, prank_B1, ppos_B1, live_B1, m_B, pos_B1, slot_B1)
      cache = cache.write(k, v, prank_B1, live_B1)
    logp = banned_log_probs(logits, mask_id, temperature, vocab_limit)
    tokens = _scatter(tokens, pos_B1, jax.random.categorical(r, logp), active_B[:, None])
    return tokens, cache, n_B + active_B, jnp.where(active_B, n_B, done_B), nfe_B + active_B, key

  state = step((tokens_BN, None, m_B, m_B, jnp.zeros((B,), jnp.int32), rng), first=True)
  tokens, _, _, _, nfe_B, _ = jax.lax.while_loop(lambda s: jnp.any(s[2] < N), partial(step, first=False), state)
  return tokens, nfe_B, nfe_B


@partial(jax.jit, static_argnames=("apply_fn", "k", "mask_id", "temperature", "vocab_limit"))
def assd_sample_cached(apply_fn, params: Any, tokens_BN: jax.Array, rank_BN: jax.Array, m_B: jax.Array,
                       rng: jax.Array, valid_BN: jax.Array | None = None, *, k: int, mask_id: int,
                       temperature: float = 1.0, vocab_limit: int | None = None
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """decode/assd.py assd_sample over the rank cache (the same rounds and draws). Returns (tokens, nfe, rounds)."""
  if k < 1:
    raise ValueError(f"k={k}: ASSD needs at least one draft per round")
  B, N = tokens_BN.shape
  valid_BN = _valid(tokens_BN, valid_BN)
  tokens_BN, order_BN = _start(tokens_BN, rank_BN, m_B, mask_id)
  m_B = m_B.astype(jnp.int32)
  t_K = jnp.arange(k)

  def round_(state, first: bool):
    tokens, cache, n_B, done_B, nfe_B, rounds_B, key = state
    key, r_draft, r_accept, r_resid = jax.random.split(key, 4)
    active_B = n_B < N
    kp_B = jnp.minimum(k, N - n_B)
    slot_rank_BK = jnp.minimum(n_B[:, None] + t_K[None], N - 1)
    pos_BK = jnp.take_along_axis(order_BN, slot_rank_BK, axis=1)
    valid_BK = (t_K[None] < kp_B[:, None]) & active_B[:, None]
    draft_limit_BK = jnp.broadcast_to(n_B[:, None], (B, k))
    if first:                        # draft pass (the prefill is the first round's)
      logits_q, cache = _prefill(apply_fn, params, tokens, rank_BN, m_B, valid_BN, pos_BK, draft_limit_BK)
    else:
      tok_B1, prank_B1, ppos_B1, live_B1 = _pending(tokens, order_BN, n_B, done_B)
      logits_q, (kq, vq) = _call(apply_fn, params, cache, tok_B1, prank_B1, ppos_B1, live_B1, m_B, pos_BK,
                                 draft_limit_BK)
      cache = cache.write(kq, vq, prank_B1, live_B1)
    logq = banned_log_probs(logits_q, mask_id, temperature, vocab_limit)
    drafts_BK = jax.random.categorical(r_draft, logq)
    need_verify = jnp.any(valid_BK[:, 1:])

    def verify():                                                                         # verify pass
      logits_p, (kp, vp) = _call(apply_fn, params, cache, drafts_BK.astype(jnp.int32), slot_rank_BK, pos_BK,
                                 valid_BK, m_B, pos_BK, slot_rank_BK)
      return banned_log_probs(logits_p, mask_id, temperature, vocab_limit), kp, vp, jnp.bool_(True)

    def skip():
      shape = cache.k.shape[:2] + (k,) + cache.k.shape[3:]
      return logq, jnp.zeros(shape, cache.k.dtype), jnp.zeros(shape, cache.v.dtype), jnp.bool_(False)

    logp, kp, vp, verified = jax.lax.cond(need_verify, verify, skip)
    values_BK, j_B, has_rej_B, at_j = accept_and_resample(logq, logp, drafts_BK, valid_BK, kp_B, r_accept, r_resid)
    accepted_BK = valid_BK & (t_K[None] < j_B[:, None])
    write_BK = accepted_BK | (valid_BK & at_j)
    tokens = _scatter(tokens, pos_BK, values_BK, write_BK)
    cache = cache.write(kp, vp, slot_rank_BK, accepted_BK & verified)   # accepted drafts' entries are final
    written_B = jnp.where(has_rej_B, j_B + 1, kp_B)
    kept_B = jnp.where(verified, jnp.where(has_rej_B, j_B, kp_B), 0)
    new_n_B = jnp.where(active_B, n_B + written_B, n_B)
    done_B = jnp.where(active_B, n_B + kept_B, done_B)
    nfe_B = nfe_B + jnp.where(active_B, jnp.where(kp_B > 1, 2, 1), 0)
    return tokens, cache, new_n_B, done_B, nfe_B, rounds_B + active_B, key

  state = round_((tokens_BN, None, m_B, m_B, jnp.zeros((B,), jnp.int32), jnp.zeros((B,), jnp.int32), rng),
                 first=True)
  tokens, _, _, _, nfe_B, rounds_B, _ = jax.lax.while_loop(lambda s: jnp.any(s[2] < N), partial(round_, first=False),
                                                           state)
  return tokens, nfe_B, rounds_B
