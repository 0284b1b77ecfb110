"""Exact speculative decoding: standard speculative sampling (Leviathan et al. 2023; Chen et al. 2023) and SpecTr's
K-SEQ multi-draft selection (Sun et al., NeurIPS 2023), as pure verification functions over probabilities plus a
KV-cache generation loop over two causal LMs.

Both verifiers are exact: the committed tokens are distributed as the target model's (after its sampler chain),
whatever the draft. Notation: `t` = target distribution, `d` = draft distribution.

Standard (one draft of k tokens): accept draft x_i with probability min(1, t_i(x_i) / d_i(x_i)); at the first
rejection sample from norm(max(t_i - d_i, 0)); if all k are accepted, sample a bonus token from t_{k+1}.

K-SEQ (K i.i.d. draft sequences): at each depth, among the drafts consistent with the accepted prefix (their
next tokens are i.i.d. from d), with beta(rho) = sum_x min(d(x), t(x)/rho) and rho* the root in [1, K'] of
1 - (1 - beta)^K' = rho * beta, accept candidate X_i with probability min(1, t(X_i) / (rho* d(X_i))) and take the
first accepted; if none, sample from the residual
  [t(x) - min(d(x), t(x)/rho*) (1 - (1 - beta)^K') / beta] / (1 - beta)^K'.
With K' = 1, rho* = 1 and this is the standard rule. Its acceptance probability 1 - (1 - beta(rho*))^K' is at
least the standard rule's sum_x min(d, t).
"""
from functools import partial
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

from decode.sampling import SamplerConfig, apply_chain
from models.layers.kv_cache import KVCache


def _categorical(key, probs):
  return jax.random.categorical(key, jnp.log(jnp.maximum(probs, 0.0)), axis=-1)


def verify_standard(key: jax.Array, target_probs: jax.Array, draft_probs: jax.Array,
                    draft_tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One draft per row. target_probs [B, k+1, V], draft_probs [B, k, V], draft_tokens [B, k] ->
  (number of accepted drafts n [B], the token that follows them [B])."""
  B, k = draft_tokens.shape
  k_acc, k_res = jax.random.split(key)
  t_x = jnp.take_along_axis(target_probs[:, :k], draft_tokens[..., None], -1)[..., 0]
  d_x = jnp.take_along_axis(draft_probs, draft_tokens[..., None], -1)[..., 0]
  accept = jax.random.uniform(k_acc, (B, k)) * d_x < t_x
  n = jnp.sum(jnp.cumprod(accept, axis=1), axis=1)
  rows = jnp.arange(B)
  t_n = target_probs[rows, n]
  d_n = jnp.where((n < k)[:, None], draft_probs[rows, jnp.minimum(n, k - 1)], 0.0)
  residual = jnp.maximum(t_n - d_n, 0.0)
  residual = jnp.where(residual.sum(-1, keepdims=True) > 0, residual, t_n)   # t == d: nothing to correct
  return n, _categorical(k_res, residual)


def kseq_rho(t: jax.Array, d: jax.Array, num: jax.Array, iters: int = 40) -> jax.Array:
  """rho* in [1, num]: the root of rho * beta(rho) = 1 - (1 - beta(rho))^num (bisection)."""
  def f(rho):
    beta = jnp.sum(jnp.minimum(d, t / rho))
    return rho * beta - (1 - (1 - beta) ** num)

  def body(_, lo_hi):
    lo, hi = lo_hi
    mid = 0.5 * (lo + hi)
    ok = f(mid) >= 0
    return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

  num = jnp.asarray(num, jnp.float32)
  _, hi = jax.lax.fori_loop(0, iters, body, (jnp.float32(1.0), jnp.maximum(num, 1.0)))
  return jnp.where(num <= 1, 1.0, hi)


def kseq_select(key: jax.Array, t: jax.Array, d: jax.Array, candidates: jax.Array,
                valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Token-level K-SEQ over the valid candidates (i.i.d. from d): returns (accepted?, index of the accepted
  candidate, the output token: the accepted candidate or a residual sample). t, d: [V]; candidates, valid: [K]."""
  k_acc, k_res = jax.random.split(key)
  num = jnp.sum(valid)
  rho = kseq_rho(t, d, num)
  beta = jnp.sum(jnp.minimum(d, t / rho))
  t_c, d_c = t[candidates], d[candidates]
  accept = valid & (jax.random.uniform(k_acc, candidates.shape) * rho * d_c < t_c)
  any_accept = jnp.any(accept)
  idx = jnp.argmax(accept)
  miss = (1 - beta) ** num
  residual = (t - jnp.minimum(d, t / rho) * (1 - miss) / jnp.maximum(beta, 1e-30)) / jnp.maximum(miss, 1e-30)
  residual = jnp.where((beta > 0) & (miss > 0), jnp.maximum(residual, 0.0), t)
  token = jnp.where(any_accept, candidates[idx], _categorical(k_res, residual))
  return any_accept, idx, token


def verify_kseq(key: jax.Array, target_probs: jax.Array, draft_probs: jax.Array,
                drafts: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """K draft sequences for one prompt. target_probs [K, L+1, V] and draft_probs [K, L, V] are each draft's own
  conditionals; drafts [K, L]. Returns (n accepted, next token, index of a draft whose first n tokens are the
  accepted ones). Vmap it over a batch of prompts."""
  K, L = drafts.shape

  def step(carry, xs):
    consistent, n, done, token, rep = carry
    depth, key_d = xs
    row = jnp.argmax(consistent)               # any consistent draft carries the same conditionals
    accepted, idx, tok = kseq_select(key_d, target_probs[row, depth], draft_probs[row, depth], drafts[:, depth],
                                     consistent)
    active = ~done
    new_consistent = jnp.where(active & accepted, consistent & (drafts[:, depth] == tok), consistent)
    n = n + (active & accepted).astype(n.dtype)
    token = jnp.where(active & ~accepted, tok, token)
    rep = jnp.where(active & accepted, idx, rep)
    return (new_consistent, n, done | (active & ~accepted), token, rep), None

  keys = jax.random.split(key, L + 1)
  init = (jnp.ones((K,), bool), jnp.zeros((), jnp.int32), jnp.zeros((), bool), jnp.zeros((), drafts.dtype),
          jnp.zeros((), jnp.int32))
  (consistent, n, done, token, rep), _ = jax.lax.scan(step, init, (jnp.arange(L), keys[:L]))
  bonus = _categorical(keys[L], target_probs[jnp.argmax(consistent), L]).astype(drafts.dtype)
  return n, jnp.where(done, token, bonus), rep


@flax.struct.dataclass
class SpeculativeState:
  tokens: jax.Array       # [B, total]
  lengths: jax.Array      # [B] committed tokens
  target_cache: KVCache   # batch B*K; holds entries for positions < lengths - 1
  draft_cache: KVCache    # batch B*K
  key: jax.Array
  rounds: jax.Array       # target calls so far
  accepted: jax.Array     # [B] drafts accepted so far


def _probs(logits, sampler):
  if sampler is None:   # greedy: point masses on the argmax
    return jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=jnp.float32)
  return jax.nn.softmax(apply_chain(logits, sampler), axis=-1)


def _repeat(x, K):
  return jnp.repeat(x, K, axis=0)


@partial(jax.jit, static_argnames=("target_apply", "draft_apply", "target_cache_fn", "draft_cache_fn",
                                   "num_draft_tokens", "num_drafts", "max_new_tokens", "sampler", "pad_id"))
def speculative_generate(target_apply: Callable, draft_apply: Callable, target_cache_fn: Callable,
                         draft_cache_fn: Callable, target_params: Any, draft_params: Any, prompt_BP: jax.Array,
                         prompt_lengths_B: jax.Array, key: jax.Array, *, num_draft_tokens: int, max_new_tokens: int,
                         num_drafts: int = 1, sampler: SamplerConfig | None = None,
                         pad_id: int = 0) -> tuple[jax.Array, jax.Array, dict]:
  """Generates max_new_tokens per row with a draft model proposing `num_draft_tokens` per round.

  num_drafts = 1: standard speculative sampling; > 1: SpecTr K-SEQ over that many i.i.d. draft sequences (each
  a row of a B*K batch; caches are re-synchronised to an accepted draft after every round). sampler=None is
  greedy (the output then equals the target's greedy decoding). Returns (tokens [B, P+max_new_tokens],
  lengths [B], stats with `rounds` (target calls after the prefill) and `accepted` drafts per row).
  """
  B, P = prompt_BP.shape
  K, k = num_drafts, num_draft_tokens
  total = P + max_new_tokens + k + 1
  BK = B * K
  tokens = jnp.full((B, total), pad_id, prompt_BP.dtype).at[:, :P].set(prompt_BP)
  tokens = jnp.where(jnp.arange(total)[None] < prompt_lengths_B[:, None], tokens, pad_id)
  # Prefill everything but the last prompt token: each round starts by feeding the last committed token.
  prompt_rep, start = _repeat(prompt_BP, K), _repeat(prompt_lengths_B - 1, K)
  _, tc = target_apply({"params": target_params}, prompt_rep, cache=target_cache_fn(BK, total).rewind(
      jnp.zeros((BK,), jnp.int32)))
  _, dc = draft_apply({"params": draft_params}, prompt_rep, cache=draft_cache_fn(BK, total).rewind(
      jnp.zeros((BK,), jnp.int32)))
  state = SpeculativeState(tokens, prompt_lengths_B.astype(jnp.int32), tc.rewind(start), dc.rewind(start), key,
                           jnp.zeros((), jnp.int32), jnp.zeros((B,), jnp.int32))
  rows = jnp.arange(B)

  def cond(s):
    return jnp.any(s.lengths - prompt_lengths_B < max_new_tokens)

  def body(s: SpeculativeState) -> SpeculativeState:
    key, k_draft, k_verify = jax.random.split(s.key, 3)
    last = _repeat(s.tokens[rows, s.lengths - 1], K)                   # [BK]
    base = _repeat(s.lengths - 1, K)

    def draft_step(carry, key_i):
      tok, cache = carry
      logits, cache = draft_apply({"params": draft_params}, tok[:, None], cache=cache)
      probs = _probs(logits[:, 0], sampler)
      nxt = (_categorical(key_i, probs) if sampler is not None else jnp.argmax(probs, -1)).astype(tok.dtype)
      return (nxt, cache), (nxt, probs)

    # k + 1 draft steps: the last one only writes d_k into the draft cache (needed when all k are accepted).
    (_, dcache), (drafts, dprobs) = jax.lax.scan(draft_step, (last, s.draft_cache.rewind(base)),
                                                 jax.random.split(k_draft, k + 1))
    drafts, dprobs = drafts[:k].T, jnp.swapaxes(dprobs[:k], 0, 1)      # [BK, k], [BK, k, V]
    t_logits, tcache = target_apply({"params": target_params}, jnp.concatenate([last[:, None], drafts], 1),
                                    cache=s.target_cache.rewind(base))
    tprobs = _probs(t_logits, sampler)                                  # [BK, k+1, V]
    if K == 1:
      n, nxt = verify_standard(k_verify, tprobs, dprobs, drafts)
      rep = jnp.zeros((B,), jnp.int32)
    else:
      n, nxt, rep = jax.vmap(verify_kseq)(jax.random.split(k_verify, B), tprobs.reshape(B, K, k + 1, -1),
                                          dprobs.reshape(B, K, k, -1), drafts.reshape(B, K, k))
    chosen = drafts.reshape(B, K, k)[rows, rep]                         # [B, k]
    # Commit the accepted drafts and the next token (positions past max_new are dropped at the end).
    offs = jnp.arange(k + 1)[None]
    new = jnp.where(offs < n[:, None], jnp.concatenate([chosen, chosen[:, :1]], 1), nxt[:, None])
    write = offs <= n[:, None]
    idx = jnp.minimum(s.lengths[:, None] + offs, total - 1)
    active = (s.lengths - prompt_lengths_B < max_new_tokens)[:, None]
    tokens = s.tokens.at[rows[:, None], idx].set(jnp.where(write & active, new, s.tokens[rows[:, None], idx]))
    lengths = s.lengths + jnp.where(active[:, 0], n + 1, 0)

    def pick(x):   # [L, B*K, ...]: every replica takes the accepted draft's entries
      if K == 1:
        return x
      return jnp.repeat(x.reshape(x.shape[0], B, K, *x.shape[2:])[:, rows, rep], K, axis=1)

    def sync(cache: KVCache) -> KVCache:
      return cache.replace(k=pick(cache.k), v=pick(cache.v)).rewind(_repeat(lengths - 1, K))

    return SpeculativeState(tokens, lengths, sync(tcache), sync(dcache), key, s.rounds + 1,
                            s.accepted + jnp.where(active[:, 0], n, 0))

  s = jax.lax.while_loop(cond, body, state)
  final = jnp.minimum(s.lengths, prompt_lengths_B + max_new_tokens)
  tokens = jnp.where(jnp.arange(total)[None] < final[:, None], s.tokens, pad_id)[:, :P + max_new_tokens]
  return tokens, final, {"rounds": s.rounds, "accepted": s.accepted}
