"""Samplers for masked diffusion LMs: one-token-per-call reference, parallel and Fast-dLLM-style unmasking,
semi-autoregressive blocks, the MDLM ancestral sampler (cached and not) and the ADJUST sampler.

Legend: B batch, L length, V vocabulary, D hidden (ADJUST state).

Every sampler is a jitted-friendly `lax.while_loop` over static shapes that runs until no mask id is left in any
row, with per-row progress (a finished row is never touched again and stops counting calls). Rows start as token
ids with `mask_id` wherever a token is to be generated: a prompt is any set of fixed (non-mask) positions, a prefix
or anything else. Logit sources are functions of the current tokens:
  denoise_fn(x_BL) -> logits_BLV                                  (an MDLM: e.g. MaskedDiffusionLM.apply)
  base_fn(x_BL) -> (logits_BLV, h_BLD); adjust_fn(x_BL, h_BLD, logits_BLV) -> (logits_BLV, h_BLD)   (ADJUST)
After every source the same bans are applied (spec pitfall 1): the mask id, `banned_ids` and ids >= vocab_limit
get -inf. Then `decode/sampling.py`'s chain (temperature, top-k, top-p, ...; `sampler=None` is greedy) is applied
the same way in every sampler, and positions are ranked and tokens drawn from those processed logits.

Position rules (`rule`): "entropy" (lowest entropy first), "confidence" (highest top probability), "margin"
(largest gap between the two most likely tokens), "random" (uniformly random order). Deterministic rules break
ties by the lowest index (scores within `tie_tol`). With `threshold`, every eligible masked position whose top
probability is at least `threshold` is revealed at once, and at least the best-ranked one (Fast-dLLM);
otherwise exactly `k` per call (fewer when fewer are left). `block_len` confines each call to the leftmost block
that still has masks (semi-autoregressive decoding, as LLaDA and Fast-dLLM).

Tokens are drawn by Gumbel-max with uniforms in `noise_dtype` (float32, or float64 when jax_enable_x64 is on:
the reference codebases moved to float64 because float32 Gumbel noise truncates the tail, which lowers
generative perplexity while hurting diversity).

`position_scores` and `pick_position` take `xp` (jax.numpy or numpy) so that decode/diffusion_exact.py ranks
positions with the very same function in float64.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from decode.sampling import SamplerConfig, apply_chain

RULES = ("entropy", "confidence", "margin", "random")


def log_softmax(logits: Any, xp=jnp) -> Any:
  m = xp.max(logits, axis=-1, keepdims=True)
  m = xp.where(xp.isfinite(m), m, 0.0)
  return logits - (m + xp.log(xp.sum(xp.exp(logits - m), axis=-1, keepdims=True)))


def position_scores(logits: Any, rule: str, xp=jnp, rng: jax.Array | None = None) -> Any:
  """Per-position score [..., L] of logits [..., L, V]; lower is revealed first."""
  logp = log_softmax(logits, xp)
  p = xp.exp(logp)
  if rule == "entropy":
    return -xp.sum(p * xp.where(p > 0, logp, 0.0), axis=-1)
  if rule == "confidence":
    return -xp.max(p, axis=-1)
  if rule == "margin":
    top2 = xp.sort(p, axis=-1)[..., -2:]
    return -(top2[..., 1] - top2[..., 0])
  if rule == "random":
    if rng is None:
      raise ValueError("rule='random' needs an rng")
    return jax.random.uniform(rng, logits.shape[:-1])
  raise ValueError(f"position rule {rule!r}: use one of {RULES}")


def pick_position(score_BL: Any, eligible_BL: Any, tie_tol: float = 0.0, xp=jnp) -> Any:
  """Index [B] of the lowest-scoring eligible position; scores within tie_tol of the best tie, and ties go to the
  lowest index. Rows with nothing eligible return 0 (callers mask the pick with `eligible`)."""
  s = xp.where(eligible_BL, score_BL, xp.inf)
  best = xp.min(s, axis=-1, keepdims=True)
  return xp.argmax(eligible_BL & (s <= best + tie_tol), axis=-1)


def ban(logits_BLV: jax.Array, *, mask_id: int, banned_ids: tuple[int, ...] = (),
        vocab_limit: int | None = None) -> jax.Array:
  ids_V = jnp.arange(logits_BLV.shape[-1])
  banned_V = (ids_V == mask_id) | jnp.isin(ids_V, jnp.asarray(banned_ids, jnp.int32))
  if vocab_limit is not None:
    banned_V |= ids_V >= vocab_limit
  return jnp.where(banned_V, -jnp.inf, logits_BLV.astype(jnp.float32))


def _check_noise_dtype(noise_dtype) -> Any:
  dt = jnp.dtype(noise_dtype)
  if dt not in (jnp.float32, jnp.float64):
    raise ValueError(f"noise_dtype={dt}: use float32 or float64")
  if dt == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError("noise_dtype=float64 needs 64-bit JAX: set jax.config.update('jax_enable_x64', True) first")
  return dt


def draw_tokens(rng: jax.Array, logits_BLV: jax.Array, noise_dtype=jnp.float32, greedy: bool = False) -> jax.Array:
  """Gumbel-max draws [B, L] from (processed) logits; argmax when greedy."""
  if greedy:
    return jnp.argmax(logits_BLV, axis=-1).astype(jnp.int32)
  dt = _check_noise_dtype(noise_dtype)
  u = jax.random.uniform(rng, logits_BLV.shape, dt, minval=jnp.finfo(dt).tiny, maxval=1.0)
  return jnp.argmax(logits_BLV.astype(dt) - jnp.log(-jnp.log(u)), axis=-1).astype(jnp.int32)


def _processed(logits_BLV, sampler: SamplerConfig | None, bans: dict) -> jax.Array:
  logits_BLV = ban(logits_BLV, **bans)
  return logits_BLV if sampler is None else apply_chain(logits_BLV, sampler)


def _check(rule: str, k: int, threshold: float | None, block_len: int | None) -> None:
  if rule not in RULES:
    raise ValueError(f"position rule {rule!r}: use one of {RULES}")
  if k < 1:
    raise ValueError(f"k={k}: reveal at least one token per call")
  if threshold is not None and not 0.0 < threshold <= 1.0:
    raise ValueError(f"threshold={threshold} must be in (0, 1]")
  if block_len is not None and block_len < 1:
    raise ValueError(f"block_len={block_len} must be >= 1")


def choose_positions(logits_BLV: jax.Array, masked_BL: jax.Array, rng: jax.Array, *, k: int, rule: str,
                     threshold: float | None = None, block_len: int | None = None,
                     tie_tol: float = 0.0) -> jax.Array:
  """The positions [B, L] (bool) one call reveals, from processed logits."""
  L = masked_BL.shape[-1]
  pos_L = jnp.arange(L)
  eligible_BL = masked_BL
  if block_len is not None:
    first_B = jnp.min(jnp.where(masked_BL, pos_L // block_len, L), axis=-1)
    eligible_BL = masked_BL & (pos_L // block_len == first_B[:, None])
  score_BL = position_scores(logits_BLV, rule, jnp, rng)
  chosen_BL = jnp.zeros_like(masked_BL)
  left_BL = eligible_BL
  for _ in range(1 if threshold is not None else k):
    hit_BL = (pos_L == pick_position(score_BL, left_BL, tie_tol)[:, None]) & left_BL
    chosen_BL, left_BL = chosen_BL | hit_BL, left_BL & ~hit_BL
  if threshold is not None:
    confident_BL = jnp.max(jax.nn.softmax(logits_BLV, axis=-1), axis=-1) >= threshold
    chosen_BL |= eligible_BL & confident_BL
  return chosen_BL


def unmask_sample(denoise_fn: Callable[[jax.Array], jax.Array], x_BL: jax.Array, rng: jax.Array, *, mask_id: int,
                  k: int = 1, rule: str = "entropy", threshold: float | None = None, block_len: int | None = None,
                  sampler: SamplerConfig | None = SamplerConfig(), banned_ids: tuple[int, ...] = (),
                  vocab_limit: int | None = None, noise_dtype=jnp.float32,
                  tie_tol: float = 0.0, return_order: bool = False) -> tuple[jax.Array, ...]:
  """Reveals `k` masked positions per model call (or by `threshold`) until none is left.

  k=1 with rule="entropy" is the exact reference sampler P_seq of the spec (one token per call, lowest entropy
  first); k=K is the parallel baseline P_par (K positions from one set of logits, each drawn from its marginal).
  Returns (tokens [B, L], model calls per row [B]) and, with return_order, the call index [B, L] at which each
  position was revealed (-1: given), which is the whole trajectory s_0 .. s_T (ADJUST's training data).
  """
  _check(rule, k, threshold, block_len)
  bans = dict(mask_id=mask_id, banned_ids=tuple(banned_ids), vocab_limit=vocab_limit)

  def cond(state):
    return jnp.any(state[0] == mask_id)

  def body(state):
    x, calls, order, i = state
    r_pos, r_tok = jax.random.split(jax.random.fold_in(rng, i))
    logits = _processed(denoise_fn(x), sampler, bans)
    masked = x == mask_id
    chosen = choose_positions(logits, masked, r_pos, k=k, rule=rule, threshold=threshold, block_len=block_len,
                              tie_tol=tie_tol)
    tokens = draw_tokens(r_tok, logits, noise_dtype, greedy=sampler is None)
    return jnp.where(chosen, tokens, x), calls + masked.any(-1), jnp.where(chosen, calls[:, None], order), i + 1

  init = (x_BL, jnp.zeros(x_BL.shape[0], jnp.int32), jnp.full(x_BL.shape, -1, jnp.int32), jnp.int32(0))
  x, calls, order, _ = jax.lax.while_loop(cond, body, init)
  return (x, calls, order) if return_order else (x, calls)


def ancestral_times(num_steps: int) -> np.ndarray:
  """t_i = 1 - i / num_steps, i = 0..num_steps (alpha_t = 1 - t: the linear schedule)."""
  return 1.0 - np.arange(num_steps + 1) / num_steps


def ancestral_sample(denoise_fn: Callable[[jax.Array], jax.Array], x_BL: jax.Array, rng: jax.Array, *,
                     mask_id: int, num_steps: int, cache: bool = False,
                     sampler: SamplerConfig | None = SamplerConfig(), banned_ids: tuple[int, ...] = (),
                     vocab_limit: int | None = None, noise_dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """MDLM's ancestral sampler over `num_steps` steps t_i -> t_{i+1}: every still-masked token is revealed
  independently with probability (t_i - t_{i+1}) / t_i (all of them at the last step), its value drawn from its
  marginal. `cache=True` skips the model call for a row whose tokens did not change since its last call (the SUBS
  denoiser has no time input, so its logits would be the same): same samples for the same rng, fewer calls.
  Returns (tokens [B, L], model calls per row [B]).
  """
  if num_steps < 1:
    raise ValueError(f"num_steps={num_steps} must be >= 1")
  bans = dict(mask_id=mask_id, banned_ids=tuple(banned_ids), vocab_limit=vocab_limit)
  t = ancestral_times(num_steps)
  reveal_I = jnp.asarray(np.where(t[1:] > 0, (t[:-1] - t[1:]) / t[:-1], 1.0), jnp.float32)
  B = x_BL.shape[0]

  def call(x):
    return _processed(denoise_fn(x), sampler, bans)

  def cond(state):
    x, _, _, _, i = state
    return (i < num_steps) & jnp.any(x == mask_id)

  def body(state):
    x, logits, stale_B, calls, i = state
    masked = x == mask_id
    active_B = masked.any(-1)
    if cache:   # one batched call when any active row changed; other rows keep their (identical) logits
      need_B = stale_B & active_B
      logits = jax.lax.cond(need_B.any(), lambda: jnp.where(need_B[:, None, None], call(x), logits),
                            lambda: logits)
    else:
      need_B = active_B
      logits = call(x)
    r_rev, r_tok = jax.random.split(jax.random.fold_in(rng, i))
    chosen = masked & (jax.random.uniform(r_rev, x.shape) < reveal_I[i])
    tokens = draw_tokens(r_tok, logits, noise_dtype, greedy=sampler is None)
    return jnp.where(chosen, tokens, x), logits, chosen.any(-1), calls + need_B, i + 1

  logits0 = jnp.zeros(jax.eval_shape(call, x_BL).shape, jnp.float32)
  init = (x_BL, logits0, jnp.ones(B, bool), jnp.zeros(B, jnp.int32), jnp.int32(0))
  x, _, _, calls, _ = jax.lax.while_loop(cond, body, init)
  return x, calls


def adjust_sample(base_fn: Callable, adjust_fn: Callable, x_BL: jax.Array, rng: jax.Array, *, mask_id: int, k: int,
                  rule: str = "entropy", sampler: SamplerConfig | None = SamplerConfig(),
                  banned_ids: tuple[int, ...] = (), vocab_limit: int | None = None, noise_dtype=jnp.float32,
                  tie_tol: float = 0.0) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The ADJUST sampler (spec §4, exact K per step): per step one base call, then K - 1 ADJUST calls, one token
  revealed after each (the best-ranked masked position under the current logits); ADJUST's logits get the bans
  re-applied. An identity adjust_fn (returning its logits) is the parallel sampler; one returning the exact
  conditionals is the sequential one. Returns (tokens [B, L], base calls [B], ADJUST calls [B]).
  """
  _check(rule, k, None, None)
  bans = dict(mask_id=mask_id, banned_ids=tuple(banned_ids), vocab_limit=vocab_limit)
  logits0, h0 = jax.eval_shape(base_fn, x_BL)
  B = x_BL.shape[0]

  def cond(state):
    return jnp.any(state[0] == mask_id)

  def body(state):
    x, logits, h, depth, base_calls, adjust_calls, i = state
    masked = x == mask_id
    active_B = masked.any(-1)
    logits, h = jax.lax.cond(depth == 0, lambda: base_fn(x), lambda: adjust_fn(x, h, logits))
    logits = ban(logits, **bans)      # the raw logits are carried to the next ADJUST call; processing is per draw
    processed = logits if sampler is None else apply_chain(logits, sampler)
    r_pos, r_tok = jax.random.split(jax.random.fold_in(rng, i))
    chosen = choose_positions(processed, masked, r_pos, k=1, rule=rule, tie_tol=tie_tol)
    tokens = draw_tokens(r_tok, processed, noise_dtype, greedy=sampler is None)
    base_calls += active_B & (depth == 0)
    adjust_calls += active_B & (depth > 0)
    return jnp.where(chosen, tokens, x), logits, h, (depth + 1) % k, base_calls, adjust_calls, i + 1

  zeros_B = jnp.zeros(B, jnp.int32)
  init = (x_BL, jnp.zeros(logits0.shape, jnp.float32), jnp.zeros(h0.shape, h0.dtype), jnp.int32(0), zeros_B,
          zeros_B, jnp.int32(0))
  x, _, _, _, base_calls, adjust_calls, _ = jax.lax.while_loop(cond, body, init)
  return x, base_calls, adjust_calls
