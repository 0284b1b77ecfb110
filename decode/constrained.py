"""Constrained generation under a regular expression: the expression compiled through the vocabulary's token
bytes into a DFA over token ids, sampled by full masking (the exact reference) or by adaptive weighted rejection
sampling (AWRS; Lipkin et al., COLM 2025, genlm-control's `recursive_awrs`), with a sequential Monte Carlo driver
over AWRS particles for whole-sequence constraints.

The DFA (`TokenDfa`): interegular's character automaton of the expression, pruned to live states (a final state
stays reachable), walked through each token's text: `next[s, v]` is the state after token v from state s, -1 when v
leaves the language; EOS is allowed exactly in final states. Constraints are over characters: a token whose bytes
are not whole UTF-8 characters (SentencePiece's byte-fallback pieces) is never allowed.

AWRS for one step, given the next-token law p and the constraint c: draw a Gumbel order (Plackett-Luce sampling
without replacement), walk it to the first allowed token x (an exact sample of p c / Z) and return with it a log
weight whose exponential is an unbiased estimate of Z = sum p c: log of the mass remaining when x is reached (the
product of (1 - q) over the rejections, q a rejected token's share of the mass left, telescopes to it) plus, when
the next token of the order is rejected, log q_x (a one-coin estimate of the tail). The remaining masses are direct
reverse sums in sorted order, not a running 1 - R (the spec's float32 trap). The walk reads c at the tokens it
passes: `calls` counts them (full masking reads all V); here c is a table lookup, so the count is what a costly
constraint (a parser, a Python callable) would pay. The geometric-weight variant is not implemented.
Legend: V vocabulary, S DFA states, N particles.
"""
import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class TokenDfa:
  """`next_SV[s, v]`: the state after token v from state s (-1: not allowed); `final_S`: states where the text may
  end; state 0 is the start."""
  next_SV: np.ndarray
  final_S: np.ndarray
  eos_id: int
  pattern: str

  @property
  def num_states(self) -> int:
    return self.next_SV.shape[0]

  def allowed(self, state: int) -> np.ndarray:
    """bool [V]: the tokens allowed in `state` (EOS where the text may end)."""
    ok = self.next_SV[state] >= 0
    ok[self.eos_id] = bool(self.final_S[state])
    return ok

  def accepts(self, ids: Sequence[int]) -> bool:
    """Whether the token sequence spells a text the expression matches whole (EOS, if any, ends it)."""
    s = 0
    for t in ids:
      if int(t) == self.eos_id:
        return bool(self.final_S[s])
      s = int(self.next_SV[s, int(t)])
      if s < 0:
        return False
    return bool(self.final_S[s])


def compile_regex(pattern: str, vocab: Any) -> TokenDfa:
  """The expression as a DFA over `vocab`'s ids (module docstring); one line if it matches no text at all."""
  import interegular
  from interegular.fsm import anything_else
  try:
    fsm = interegular.parse_pattern(pattern).to_fsm().reduce()
  except Exception as e:  # noqa: BLE001 - interegular's parse errors name no common base class
    raise ValueError(f"decode.regex={pattern!r} is not a regular expression interegular reads ({e})") from None
  live = sorted(s for s in fsm.states if fsm.islive(s))
  if fsm.initial not in live:
    raise ValueError(f"decode.regex={pattern!r} matches no text: no output can satisfy it")
  order = [fsm.initial] + [s for s in live if s != fsm.initial]
  index = {s: i for i, s in enumerate(order)}
  alphabet = fsm.alphabet
  other = alphabet[anything_else]
  texts = []
  for b in vocab.token_bytes():
    try:
      texts.append(None if not b else b.decode("utf-8"))
    except UnicodeDecodeError:
      texts.append(None)
  nxt = np.full((len(order), len(texts)), -1, np.int32)
  for i, s in enumerate(order):
    for v, text in enumerate(texts):
      cur = s
      for ch in text or ():
        cur = fsm.map.get(cur, {}).get(alphabet[ch] if ch in alphabet else other)
        if cur is None or cur not in index:
          break
      else:
        if text:
          nxt[i, v] = index[cur]
  finals = np.array([s in fsm.finals for s in order])
  return TokenDfa(nxt, finals, int(vocab.sep_id), pattern)


# -- one step ------------------------------------------------------------------------------------------------
def awrs_from_order(logp_V: jax.Array, allowed_V: jax.Array, order_V: jax.Array
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Recursive AWRS on a given order of the vocabulary (a Plackett-Luce draw: `awrs` makes one): (token, log
  weight, constraint calls). Tokens of probability 0 are skipped; all rejected: weight -inf (token: the last)."""
  lp = logp_V[order_V].astype(jnp.float32)
  ok = allowed_V[order_V]
  support = lp > -jnp.inf
  p = jnp.where(support, jnp.exp(lp), 0.0)
  remaining = jnp.cumsum(p[::-1])[::-1]                      # mass from position k on, summed directly
  n_support = support.sum()
  hit = ok & support
  any_hit = hit.any()
  a = jnp.argmax(hit)                                        # the first accepted position (0 if none)
  is_last = a + 1 >= n_support
  nxt_ok = jnp.where(is_last, True, hit[jnp.minimum(a + 1, hit.shape[0] - 1)])
  log_rem = jnp.log(jnp.maximum(remaining[a], 1e-38))
  log_q = jnp.minimum(lp[a] - log_rem, 0.0)
  logw = log_rem + jnp.where(nxt_ok, 0.0, log_q)
  # skipped zero-probability tokens are never read; the first accepted is read, and the next one peeked at
  calls = jnp.sum(support & (jnp.arange(lp.shape[0]) <= a)) + jnp.where(is_last, 0, 1)
  last = order_V[jnp.maximum(n_support - 1, 0)]
  return (jnp.where(any_hit, order_V[a], last), jnp.where(any_hit, logw, -jnp.inf),
          jnp.where(any_hit, calls, n_support))


def awrs(logp_V: jax.Array, allowed_V: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One AWRS step: a Gumbel order of the law, then `awrs_from_order`."""
  keys = logp_V + jax.random.gumbel(key, logp_V.shape)
  return awrs_from_order(logp_V, allowed_V, jnp.argsort(-keys))


def masked(logp_V: jax.Array, allowed_V: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Full masking, the exact reference: a draw from p c / Z and log Z itself (calls: all V)."""
  z = jnp.where(allowed_V, logp_V, -jnp.inf)
  log_z = jax.nn.logsumexp(z)
  return jax.random.categorical(key, z), log_z, jnp.asarray(logp_V.shape[0])


STEPS = {"awrs": awrs, "mask": masked}


def plackett_luce_probability(order: Sequence[int], p: Sequence[float]) -> float:
  """The probability that a Gumbel-top order of the law p (sampling without replacement) is `order` (tokens of
  probability 0 are never drawn): what the enumeration checks of AWRS weigh each ordering by."""
  prob, rest = 1.0, list(order)
  for i in order:
    left = sum(p[j] for j in rest)   # summed directly: a running difference leaves residue on tiny p
    if left <= 0:
      break
    prob *= p[i] / left
    rest.remove(i)
  return prob


# -- whole sequences -----------------------------------------------------------------------------------------
def constrained_generate(model: Any, dfa: TokenDfa, *, num_particles: int, max_new_tokens: int,
                         method: str = "awrs", seed: int = 0, resample_ess: float = 0.5,
                         prompt: Sequence[int] = ()) -> dict[str, Any]:
  """Sequential Monte Carlo over `num_particles` continuations of `prompt` (after BOS) under the DFA, on a token
  model (decode/bytes.py's TokenModel: `CachedCausalLm` for a causal LM, with rows >= 2 N): each step
  draws every live particle's next token by `method` ("awrs" or "mask") from the model's next-token law, adds the
  step's log weight, and resamples (multinomial) when the effective sample size falls below `resample_ess` N.
  Returns the particles' token lists (EOS-terminated or cut at max_new_tokens), log weights, the log of the
  normaliser estimate (the mean of the weights, times the resampling steps' means: unbiased for the probability
  that the model's text matches and ends within max_new_tokens tokens, EOS included) and constraint calls per
  token. A particle is done at EOS; one the constraint kills (every token rejected), or one still open at the end,
  gets weight -inf."""
  if method not in STEPS:
    raise ValueError(f"method={method!r}: use one of {list(STEPS)}")
  N, lm = num_particles, model
  root, lp = lm.root()
  state = root
  for t in prompt:
    lm.keep([state])
    [state], lps = lm.step([state], [t])
    lp = lps[0]
  handles, logps = [state] * N, np.repeat(lp[None], N, 0)
  dfa_state = np.zeros(N, np.int64)
  tokens = [[] for _ in range(N)]
  logw, done = np.zeros(N), np.zeros(N, bool)
  log_z, calls, steps = 0.0, 0, 0
  rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)
  step_fn = _batched_step(method)
  V = dfa.next_SV.shape[1]
  for _ in range(max_new_tokens):
    live = np.flatnonzero(~done & np.isfinite(logw))
    if not live.size:
      break
    allowed = np.stack([dfa.allowed(int(dfa_state[i])) for i in live])
    key, sub = jax.random.split(key)
    tok, lw, c = jax.device_get(step_fn(jnp.asarray(logps[live][:, :V], jnp.float32), jnp.asarray(allowed),
                                        jax.random.split(sub, live.size)))
    calls, steps = calls + int(c.sum()), steps + live.size
    logw[live] += lw
    for j, i in enumerate(live):
      t = int(tok[j])
      tokens[i].append(t)
      if t == dfa.eos_id or not np.isfinite(lw[j]):
        done[i] = True
      else:
        dfa_state[i] = dfa.next_SV[int(dfa_state[i]), t]
    stepping = [i for i in live if not done[i]]
    if stepping:
      lm.keep([handles[i] for i in range(N) if not done[i]])
      new, lps = lm.step([handles[i] for i in stepping], [tokens[i][-1] for i in stepping])
      for i, h, row in zip(stepping, new, lps):
        handles[i], logps[i] = h, row
    w = np.exp(logw - logw.max()) if np.isfinite(logw).any() else np.zeros(N)
    if w.sum() > 0 and (w.sum() ** 2 / (w ** 2).sum()) < resample_ess * N:
      log_z += float(np.log(w.mean()) + logw.max())
      pick = rng.choice(N, N, p=w / w.sum())
      handles, logps = [handles[i] for i in pick], logps[pick]
      dfa_state, done = dfa_state[pick], done[pick]
      tokens = [list(tokens[i]) for i in pick]
      logw = np.zeros(N)
  logw = np.where(done, logw, -np.inf)   # a text still open at max_new_tokens is no complete match
  finite = np.isfinite(logw)
  if finite.any():
    log_z += float(np.log(np.exp(logw[finite] - logw[finite].max()).sum() / N) + logw[finite].max())
  else:
    log_z = -np.inf
  return {"tokens": tokens, "log_weights": logw, "log_z": log_z, "calls_per_token": calls / max(steps, 1)}


@functools.cache
def _batched_step(method: str):
  return jax.jit(jax.vmap(STEPS[method]))
