"""Truncation samplers over logits [..., vocab], with Hugging Face `transformers` semantics where HF has the method.

Every function is pure and jit-friendly (static shapes; no data-dependent sizes) and returns the logits with the
removed entries set to -inf, so functions compose and the result feeds `jax.random.categorical`. Parameters may
be Python numbers or traced scalars. Each mirrors the HF warper named in its docstring (kept sets are identical,
ties included; tests/decode/test_sampling.py checks that against `transformers`).

`SamplerConfig` + `apply_chain` compose them in an explicit order. The default order is Hugging Face's sampling
order: temperature -> top_h -> top_k -> top_p -> min_p -> typical -> epsilon -> eta; each step renormalises over
the survivors of the previous ones. Traps when comparing with other libraries:
- HF `generate` v4 applies `top_k=50` by default whenever `do_sample=True`; a model's generation_config.json may
  also set temperature/top_p. Our defaults apply nothing: every knob is off unless set.
- top-p and min-p are not temperature-invariant: HF (and we) truncate the tempered distribution; llama.cpp applies
  temperature last.
- top-k keeps every token tied with the k-th largest logit (so possibly more than k), as HF and vLLM do.
- HF's top-H ignores `min_tokens_to_keep` (it always keeps the most likely token). It ranks with torch.topk,
  whose order among equal logits is unspecified; we keep the lowest indices among ties, so with exact ties the
  two kept sets can differ by an exchange of tied (equally likely) tokens.
"""
import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def _scatter_back(sorted_mask: jax.Array, order: jax.Array) -> jax.Array:
  """A mask computed in sorted order -> the same mask in vocabulary order."""
  inverse = jnp.argsort(order, axis=-1)
  return jnp.take_along_axis(sorted_mask, inverse, axis=-1)


def _rank_mask(shape, n) -> jax.Array:
  """rank < n along the last axis (n may be traced)."""
  return jnp.arange(shape[-1]) < n


def _kth_largest(logits: jax.Array, k) -> jax.Array:
  sorted_desc = -jnp.sort(-logits, axis=-1)
  k = jnp.clip(k, 1, logits.shape[-1])
  return jnp.take_along_axis(sorted_desc, jnp.broadcast_to(jnp.asarray(k - 1), logits.shape[:-1] + (1,)), -1)


def temperature(logits: jax.Array, t) -> jax.Array:
  """HF TemperatureLogitsWarper: logits / t (t > 0; use greedy decoding for t = 0)."""
  return logits / t


def top_k(logits: jax.Array, k, min_tokens_to_keep: int = 1) -> jax.Array:
  """HF TopKLogitsWarper: removes logits strictly below the k-th largest (ties with it are kept)."""
  k = jnp.maximum(k, min_tokens_to_keep)
  return jnp.where(logits < _kth_largest(logits, k), NEG_INF, logits)


def top_p(logits: jax.Array, p, min_tokens_to_keep: int = 1) -> jax.Array:
  """HF TopPLogitsWarper: in ascending order, removes tokens whose cumulative probability is <= 1 - p
  (the smallest set with mass >= p survives); the `min_tokens_to_keep` most likely are always kept."""
  order = jnp.argsort(logits, axis=-1, stable=True)          # ascending, as HF's torch.sort
  sorted_logits = jnp.take_along_axis(logits, order, -1)
  cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
  remove = cum <= (1 - p)
  remove &= ~(jnp.arange(logits.shape[-1]) >= logits.shape[-1] - min_tokens_to_keep)
  return jnp.where(_scatter_back(remove, order), NEG_INF, logits)


def min_p(logits: jax.Array, p, min_tokens_to_keep: int = 1) -> jax.Array:
  """HF MinPLogitsWarper: removes tokens with probability < p * max probability."""
  probs = jax.nn.softmax(logits, axis=-1)
  remove = probs < p * jnp.max(probs, axis=-1, keepdims=True)
  order = jnp.argsort(-logits, axis=-1, stable=True)           # descending
  sorted_remove = jnp.take_along_axis(remove, order, -1) & ~_rank_mask(logits.shape, min_tokens_to_keep)
  return jnp.where(_scatter_back(sorted_remove, order), NEG_INF, logits)


def typical(logits: jax.Array, mass, min_tokens_to_keep: int = 1) -> jax.Array:
  """HF TypicalLogitsWarper (locally typical sampling, Meister et al.): tokens sorted by |-log p - H(p)|, keep the
  prefix up to the first index whose cumulative mass reaches `mass`, plus every token tied with it."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(logp)
  ent = -jnp.sum(jnp.where(p > 0, logp * p, 0.0), axis=-1, keepdims=True)
  shifted = jnp.abs(-logp - ent)
  order = jnp.argsort(shifted, axis=-1, stable=True)
  sorted_scores = jnp.take_along_axis(shifted, order, -1)
  cum = jnp.cumsum(jax.nn.softmax(jnp.take_along_axis(logits, order, -1), axis=-1), axis=-1)
  last = jnp.minimum(jnp.sum(cum < mass, axis=-1, keepdims=True), logits.shape[-1] - 1)
  remove = sorted_scores > jnp.take_along_axis(sorted_scores, last, -1)
  remove &= ~_rank_mask(logits.shape, min_tokens_to_keep)
  return jnp.where(_scatter_back(remove, order), NEG_INF, logits)


def _keep_top_n_guard(logits, remove, min_tokens_to_keep):
  return remove & (logits < _kth_largest(logits, min_tokens_to_keep))


def epsilon(logits: jax.Array, eps, min_tokens_to_keep: int = 1) -> jax.Array:
  """HF EpsilonLogitsWarper (truncation sampling, Hewitt et al.): removes tokens with probability < eps."""
  remove = jax.nn.softmax(logits, axis=-1) < eps
  return jnp.where(_keep_top_n_guard(logits, remove, min_tokens_to_keep), NEG_INF, logits)


def eta(logits: jax.Array, eps, min_tokens_to_keep: int = 1) -> jax.Array:
  """HF EtaLogitsWarper: removes tokens with probability < min(eps, sqrt(eps) * exp(-H(p)))."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(logp)
  ent = -jnp.sum(jnp.where(p > 0, logp * p, 0.0), axis=-1, keepdims=True)
  threshold = jnp.minimum(eps, jnp.sqrt(eps) * jnp.exp(-ent))
  return jnp.where(_keep_top_n_guard(logits, p < threshold, min_tokens_to_keep), NEG_INF, logits)


def _entropy_terms(q):
  return jnp.where(q > 0, -q * jnp.log(q), 0.0)


def top_h(logits: jax.Array, alpha, variant: str = "paper", top_n: int = 100) -> jax.Array:
  """Top-H decoding (Baghaei Potraghloo et al., NeurIPS 2025): keep the largest descending-probability prefix whose
  entropy stays within a fraction `alpha` of a reference entropy; the most likely token is always kept.

  variant="paper": renormalised prefix entropy H(q_k) = C_k / s_k + log s_k <= alpha * H(p) over the full
    vocabulary (the paper's Algorithm 1, whose guarantee this is).
  variant="hf": Hugging Face `TopHLogitsWarper`: only the `top_n` (=100) largest logits, renormalised among
    themselves to q; keep while cumsum(-q log q) <= alpha * H(q).
  variant="reference": the authors' code: p over the full vocabulary, the top_n probabilities not renormalised;
    keep while cumsum(-p log p) <= alpha * sum_{top_n}(-p log p).
  """
  V = logits.shape[-1]
  n = min(top_n, V)
  if variant == "paper":
    order = jnp.argsort(-logits, axis=-1, stable=True)
    p_sorted = jax.nn.softmax(jnp.take_along_axis(logits, order, -1), axis=-1)
    sigma = jnp.cumsum(p_sorted, -1)
    c = jnp.cumsum(_entropy_terms(p_sorted), -1)
    h_prefix = c / sigma + jnp.log(sigma)
    keep = (h_prefix <= alpha * c[..., -1:]) | _rank_mask(logits.shape, 1)
    return jnp.where(_scatter_back(keep, order), logits, NEG_INF)
  top_vals, top_idx = jax.lax.top_k(logits, n)
  if variant == "hf":
    # HF's formulas: threshold from Categorical.entropy() (normalised logits), terms from log(probs).
    logq = top_vals - jax.nn.logsumexp(top_vals, axis=-1, keepdims=True)
    q = jnp.exp(logq)
    tau = alpha * -jnp.sum(logq * q, axis=-1, keepdims=True)
  elif variant == "reference":
    q = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), top_idx, -1)
    tau = alpha * jnp.sum(_entropy_terms(q), axis=-1, keepdims=True)
  else:
    raise ValueError(f"top_h variant {variant!r}: use 'paper', 'hf' or 'reference'")
  c = jnp.cumsum(_entropy_terms(q), -1)
  keep_sorted = (c <= tau) | _rank_mask(q.shape, 1)
  keep = jnp.zeros(logits.shape, bool)
  keep = jnp.put_along_axis(keep, top_idx, keep_sorted, axis=-1, inplace=False)
  return jnp.where(keep, logits, NEG_INF)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """Sampling knobs; None (or 1.0 for temperature) means off. Hashable: pass it as a static argument.

  `order` lists the steps to run, in order; steps whose knob is off are skipped. Default: Hugging Face's.
  """
  temperature: float = 1.0
  top_h: float | None = None
  top_h_variant: str = "paper"
  top_k: int | None = None
  top_p: float | None = None
  min_p: float | None = None
  typical_p: float | None = None
  epsilon: float | None = None
  eta: float | None = None
  min_tokens_to_keep: int = 1
  order: Sequence[str] = ("temperature", "top_h", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta")

  def __post_init__(self):
    unknown = set(self.order) - {"temperature", "top_h", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta"}
    if unknown:
      raise ValueError(f"SamplerConfig.order has unknown steps {sorted(unknown)}")
    if self.temperature <= 0:
      raise ValueError("temperature must be > 0; use greedy decoding for temperature 0")
    object.__setattr__(self, "order", tuple(self.order))


def apply_chain(logits: jax.Array, cfg: SamplerConfig) -> jax.Array:
  """Applies the configured steps in `cfg.order` to logits [..., V] (float32)."""
  logits = logits.astype(jnp.float32)
  m = cfg.min_tokens_to_keep
  for step in cfg.order:
    if step == "temperature" and cfg.temperature != 1.0:
      logits = temperature(logits, cfg.temperature)
    elif step == "top_h" and cfg.top_h is not None:
      logits = top_h(logits, cfg.top_h, cfg.top_h_variant)
    elif step == "top_k" and cfg.top_k is not None:
      logits = top_k(logits, cfg.top_k, m)
    elif step == "top_p" and cfg.top_p is not None and cfg.top_p < 1.0:
      logits = top_p(logits, cfg.top_p, m)
    elif step == "min_p" and cfg.min_p is not None:
      logits = min_p(logits, cfg.min_p, m)
    elif step == "typical_p" and cfg.typical_p is not None and cfg.typical_p < 1.0:
      logits = typical(logits, cfg.typical_p, m)
    elif step == "epsilon" and cfg.epsilon is not None:
      logits = epsilon(logits, cfg.epsilon, m)
    elif step == "eta" and cfg.eta is not None:
      logits = eta(logits, cfg.eta, m)
  return logits


def sample(key: jax.Array, logits: jax.Array, cfg: SamplerConfig | None = None) -> jax.Array:
  """Draws token ids [...] from logits [..., V]; cfg=None means greedy (argmax)."""
  if cfg is None:
    return jnp.argmax(logits, axis=-1)
  return jax.random.categorical(key, apply_chain(logits, cfg), axis=-1)
