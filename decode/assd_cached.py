"""Cached any-subset decoding: sequential decoding and ASSD over a key/value cache indexed by rank.

The same samplers as decode/assd.py (same target, same accept/resample rule, same random draws per round), but
each network call encodes only what is new (AsArm.cached): a decoded token's content state reads only lower
ranks, so it is final once computed, and slot r of the cache holds the keys and values of the token of rank r.
A call writes its content tokens' entries at their slots (in place: one buffer per layer, never copied) and
attends the cache; `readable` says which slots hold final entries. Per row: `n` ranks are decoded, `done` <= n of
them have final entries; the rest (at most one, of rank n - 1: the token sampled last, an ASSD round's resampled
token or its accepted last draft) are "pending" and ride along as content in the next call.

  prefill: the first call (of a sequential step or an ASSD draft pass) takes the whole row as content (the prompt
    bidirectional) with an empty cache, and keeps the prompt's entries.
  sequential step: [pending content | query sigma(n), limit n]; the pending entry becomes final.
  ASSD round: draft call [pending | k draft queries, limit n] (the pending entry becomes final), then the verify
    call [drafts 0..k-2 as content | queries for drafts 1..k-1, limits n+1..n+k-1]: draft 0's verify query is
    not asked, its answer being the draft's own (the same conditional; the first draft is always accepted), and
    draft k-1's content is not encoded, no verify query reading it. The entries of the accepted drafts among
    0..k-2 become final (they read only accepted tokens); an accepted last draft, or the resampled token, is
    pending in the next call. A rejected draft's slot is rewritten when its rank is decoded.
The calls are the uncached path's, one for one (the same NFE and rounds, 3k - 1 rows per round instead of
2(N + k)), except that the verify call also runs in a final round of one token, where the uncached path skips it
(its verdict is fixed there; an unconditional call is cheaper than a cond on CPU; NFE counts the oracle's calls).
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
from models.family import ModuleFn
from models.layers.categorical import inverse_cdf_categorical


@flax.struct.dataclass
class RankCache:
  """k: L arrays [B, H, D, N], v: L arrays [B, H, N, D], by rank slot (one per layer, each updated in place inside
  the loop; laid out as the attention products read them); readable_BN: slot entries that are final and real (not
  padding)."""
  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  readable_BN: jax.Array

  def mark(self, rank_BP: jax.Array, keep_BP: jax.Array) -> "RankCache":
    """The entries written at these ranks' slots are final where keep."""
    N = self.readable_BN.shape[1]
    readable = self.readable_BN.at[_rows(rank_BP), jnp.where(keep_BP, rank_BP, N)].set(True, mode="drop")
    return self.replace(readable_BN=readable)


def _model_dims(apply_fn):
  # apply_fn: an AsArm module's bound `apply`, or models.family.ModuleFn of one
  cfg = (apply_fn.module if isinstance(apply_fn, ModuleFn) else apply_fn.__self__).cfg
  return cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.compute_dtype


def _call(apply_fn, params, cache, tokens_BP, rank_BP, pos_BP, live_BP, m_B, query_pos_BQ, query_limit_BQ):
  """One cached call: (logits [B, Q, V], the cache with the live content's entries written, none marked)."""
  logits, (k, v) = apply_fn({"params": params}, cache.k, cache.v, cache.readable_BN, tokens_BP, rank_BP, pos_BP,
                            live_BP, m_B, query_pos_BQ, query_limit_BQ, method="cached")
  return logits, cache.replace(k=k, v=v)


def _prefill(apply_fn, params, tokens_BN, rank_BN, m_B, valid_BN, query_pos_BQ, query_limit_BQ):
  """The first call: the whole row as content (the prompt's entries are written and kept) and the first queries.
  Returns (logits [B, Q, V], cache)."""
  B, N = tokens_BN.shape
  L, H, D, dtype = _model_dims(apply_fn)
  empty = RankCache(tuple(jnp.zeros((B, H, D, N), dtype) for _ in range(L)),
                    tuple(jnp.zeros((B, H, N, D), dtype) for _ in range(L)), jnp.zeros((B, N), bool))
  prompt_BN = (rank_BN < m_B[:, None]) & valid_BN
  logits, cache = _call(apply_fn, params, empty, tokens_BN, rank_BN, jnp.broadcast_to(jnp.arange(N), (B, N)),
                        prompt_BN, m_B, query_pos_BQ, query_limit_BQ)
  return logits, cache.mark(rank_BN, prompt_BN)


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
      logits, cache = _call(apply_fn, params, cache, tok_B1, prank_B1, ppos_B1, live_B1, m_B, pos_B1, slot_B1)
      cache = cache.mark(prank_B1, live_B1)
    logp = banned_log_probs(logits, mask_id, temperature, vocab_limit)
    tokens = _scatter(tokens, pos_B1, inverse_cdf_categorical(r, logp), active_B[:, None])
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
      logits_q, cache = _call(apply_fn, params, cache, tok_B1, prank_B1, ppos_B1, live_B1, m_B, pos_BK,
                              draft_limit_BK)
      cache = cache.mark(prank_B1, live_B1)
    logq = banned_log_probs(logits_q, mask_id, temperature, vocab_limit)
    drafts_BK = inverse_cdf_categorical(r_draft, logq)
    if k > 1:   # verify pass: drafts 0..k-2 as content, queries for drafts 1..k-1 (see the module docstring)
      live_BC = valid_BK[:, :-1] & (t_K[None, :-1] < kp_B[:, None] - 1)
      logits_p, cache = _call(apply_fn, params, cache, drafts_BK[:, :-1], slot_rank_BK[:, :-1], pos_BK[:, :-1],
                              live_BC, m_B, pos_BK[:, 1:], slot_rank_BK[:, 1:])
      logp = jnp.concatenate([logq[:, :1], banned_log_probs(logits_p, mask_id, temperature, vocab_limit)], axis=1)
    else:
      logp = logq
    values_BK, j_B, has_rej_B, at_j = accept_and_resample(logq, logp, drafts_BK, valid_BK, kp_B, r_accept, r_resid)
    accepted_BK = valid_BK & (t_K[None] < j_B[:, None])
    write_BK = accepted_BK | (valid_BK & at_j)
    tokens = _scatter(tokens, pos_BK, values_BK, write_BK)
    if k > 1:                                         # accepted drafts' written entries are final
      cache = cache.mark(slot_rank_BK[:, :-1], accepted_BK[:, :-1] & live_BC)
    kept_B = jnp.where(has_rej_B, j_B, kp_B - 1)      # the last draft, accepted, is pending
    written_B = jnp.where(has_rej_B, j_B + 1, kp_B)
    new_n_B = jnp.where(active_B, n_B + written_B, n_B)
    done_B = jnp.where(active_B, n_B + kept_B, done_B)
    nfe_B = nfe_B + jnp.where(active_B, jnp.where(kp_B > 1, 2, 1), 0)
    return tokens, cache, new_n_B, done_B, nfe_B, rounds_B + active_B, key

  state = round_((tokens_BN, None, m_B, m_B, jnp.zeros((B,), jnp.int32), jnp.zeros((B,), jnp.int32), rng),
                 first=True)
  tokens, _, _, _, nfe_B, rounds_B, _ = jax.lax.while_loop(lambda s: jnp.any(s[2] < N), partial(round_, first=False),
                                                           state)
  return tokens, nfe_B, rounds_B
