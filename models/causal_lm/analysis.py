"""Evaluations of a causal LM beyond the mean loss (lexinvariant spec §6a), on arrays of held-out rows.

  position_nll       mean NLL of each target by its position in its document, averaged over `num_keys` draws of
                     the per-sequence embedding from a fixed key (learned embeddings: one pass)
  bin_means          a curve's means over position bins (the spec's 1-4, 5-16, 17-32, 33-64, 65-127)
  relative_gap       (ppl_lex - ppl_std) / ppl_std per bin, ppl = exp(bin mean NLL)
  hidden_states      the final (post-norm) hidden states, for probes
  probe_accuracy     a linear or one-hidden-layer MLP probe from hidden states to labels (e.g. the plaintext id
                     under a cipher), trained full-batch with Adam on one split, accuracy per position on another
  episode_exact_match  exact match of answer spans under greedy decoding, computed teacher-forced: greedy decoding
                     reproduces a span exactly iff the argmax is right at every one of its positions given the
                     right prefix

Rows are [N, T] int32 arrays (tokens, segment ids, positions), processed in batches of `batch_size` in a plain
jit on this process (these are small-model diagnostics). Legend: N rows, T length, D width, K embedding draws.
"""
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from models.losses import next_token_targets

POSITION_BINS = ((1, 4), (5, 16), (17, 32), (33, 64), (65, 127))


def _row_keys(key: jax.Array, first_row: int, n: int) -> jax.Array:
  return jax.vmap(lambda r: jax.random.fold_in(key, r))(first_row + jnp.arange(n))


def position_nll(apply_fn: Callable, params: Any, tokens_NT: np.ndarray, segment_ids_NT: np.ndarray | None = None,
                 positions_NT: np.ndarray | None = None, *, embed_keys: bool, num_keys: int = 1,
                 key: jax.Array | None = None, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """(mean NLL [T], number of targets [T]) by the target's position in its document (index p: the token at
  document position p predicted from positions < p; p = 0 is never a target). Each row's embedding draw k uses
  fold_in(fold_in(key, k), row), the same for every model and call."""
  tokens_NT = np.asarray(tokens_NT, np.int32)
  N, T = tokens_NT.shape
  segs = np.ones_like(tokens_NT) if segment_ids_NT is None else np.asarray(segment_ids_NT, np.int32)
  pos = np.broadcast_to(np.arange(T, dtype=np.int32), (N, T)) if positions_NT is None else np.asarray(positions_NT,
                                                                                                      np.int32)
  key = jax.random.PRNGKey(0) if key is None else key
  draws = num_keys if embed_keys else 1

  @jax.jit
  def sums(tok, seg, ps, first_row):
    targets, valid = next_token_targets(tok, seg)
    next_pos = jnp.concatenate([ps[:, 1:], jnp.zeros_like(ps[:, :1])], axis=1)
    total = jnp.zeros(T, jnp.float32)
    for k in range(draws):
      kw = {"embed_keys": _row_keys(jax.random.fold_in(key, k), first_row, tok.shape[0])} if embed_keys else {}
      logits = apply_fn({"params": params}, tok, seg, ps, **kw)
      nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]
      total = total.at[next_pos].add(jnp.where(valid, nll, 0.0))
    count = jnp.zeros(T, jnp.float32).at[next_pos].add(valid.astype(jnp.float32))
    return total / draws, count

  total, count = np.zeros(T), np.zeros(T)
  for i in range(0, N, batch_size):
    s, c = jax.device_get(sums(tokens_NT[i:i + batch_size], segs[i:i + batch_size], pos[i:i + batch_size], i))
    total += s
    count += c
  return np.where(count > 0, total / np.maximum(count, 1), np.nan), count


def bin_means(curve_T: np.ndarray, counts_T: np.ndarray,
              bins: Sequence[tuple[int, int]] = POSITION_BINS) -> dict[str, float]:
  """Target-weighted mean of the curve over each inclusive position bin that has targets."""
  out = {}
  for lo, hi in bins:
    c = counts_T[lo:hi + 1]
    if c.sum() > 0:
      out[f"{lo}-{hi}"] = float(np.nansum(curve_T[lo:hi + 1] * c) / c.sum())
  return out


def relative_gap(lex_bins: dict[str, float], std_bins: dict[str, float]) -> dict[str, float]:
  return {b: float((np.exp(lex_bins[b]) - np.exp(std_bins[b])) / np.exp(std_bins[b])) for b in lex_bins
          if b in std_bins}


def hidden_states(apply_fn: Callable, params: Any, tokens_NT: np.ndarray, *, embed_keys: bool,
                  key: jax.Array | None = None, batch_size: int = 64) -> np.ndarray:
  """Final post-norm hidden states [N, T, D] (one embedding draw per row, from `key`)."""
  key = jax.random.PRNGKey(0) if key is None else key

  @jax.jit
  def run(tok, first_row):
    kw = {"embed_keys": _row_keys(jax.random.fold_in(key, 0), first_row, tok.shape[0])} if embed_keys else {}
    return apply_fn({"params": params}, tok, return_hidden=True, **kw)[1]
  tokens_NT = np.asarray(tokens_NT, np.int32)
  return np.concatenate([np.asarray(run(tokens_NT[i:i + batch_size], i))
                         for i in range(0, len(tokens_NT), batch_size)])


def probe_accuracy(h_train_NTD: np.ndarray, y_train_NT: np.ndarray, h_test_NTD: np.ndarray, y_test_NT: np.ndarray,
                   num_classes: int, *, kind: str = "linear", hidden: int = 256, steps: int = 500, lr: float = 1e-2,
                   seed: int = 0, train_mask_NT: np.ndarray | None = None,
                   test_mask_NT: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(per-position test accuracy [T], test count [T]) of a probe trained on the (masked-in) positions of the
  training rows (full-batch Adam, `steps` steps; kind "linear" or "mlp": one ReLU layer of `hidden` units)."""
  if kind not in ("linear", "mlp"):
    raise ValueError(f"probe kind={kind!r}: use 'linear' or 'mlp'")
  D = h_train_NTD.shape[-1]
  keep = np.ones(y_train_NT.shape, bool) if train_mask_NT is None else np.asarray(train_mask_NT, bool)
  x = jnp.asarray(h_train_NTD[keep], jnp.float32)
  y = jnp.asarray(np.asarray(y_train_NT)[keep], jnp.int32)
  mu, sd = x.mean(0), x.std(0) + 1e-6
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  if kind == "linear":
    params = {"w": jnp.zeros((D, num_classes)), "b": jnp.zeros(num_classes)}
  else:
    params = {"w1": jax.random.normal(k1, (D, hidden)) / np.sqrt(D), "b1": jnp.zeros(hidden),
              "w": jax.random.normal(k2, (hidden, num_classes)) / np.sqrt(hidden), "b": jnp.zeros(num_classes)}

  def logits(p, h):
    h = (h - mu) / sd
    if kind == "mlp":
      h = jax.nn.relu(h @ p["w1"] + p["b1"])
    return h @ p["w"] + p["b"]

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).mean()

  tx = optax.adam(lr)

  @jax.jit
  def fit(p):
    def body(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    return jax.lax.scan(body, (p, tx.init(p)), None, length=steps)[0][0]

  params = fit(params)
  pred = np.asarray(jnp.argmax(logits(params, jnp.asarray(h_test_NTD, jnp.float32)), -1))
  mask = np.ones(np.shape(y_test_NT), bool) if test_mask_NT is None else np.asarray(test_mask_NT, bool)
  hits, count = ((pred == np.asarray(y_test_NT)) & mask).sum(0), mask.sum(0)
  return np.where(count > 0, hits / np.maximum(count, 1), np.nan), count


def episode_exact_match(apply_fn: Callable, params: Any, tokens_NT: np.ndarray, answer_NT: np.ndarray,
                        episode_NT: np.ndarray, *, embed_keys: bool, num_keys: int = 1, key: jax.Array | None = None,
                        batch_size: int = 64, jit: bool = True) -> float:
  """Fraction of episodes (episode ids > 0 in `episode_NT`, one id per episode of a row) whose answer positions
  (`answer_NT` true: tokens predicted from the previous position) are all argmax-correct, averaged over draws."""
  tokens_NT = np.asarray(tokens_NT, np.int32)
  key = jax.random.PRNGKey(0) if key is None else key

  def correct(tok, first_row, k):
    kw = {"embed_keys": _row_keys(jax.random.fold_in(key, k), first_row, tok.shape[0])} if embed_keys else {}
    logits = apply_fn({"params": params}, tok, **kw)
    return jnp.argmax(logits[:, :-1], -1) == tok[:, 1:]

  if jit:   # `jit=False`: apply_fn may be a host function (tests: a rule solver)
    correct = jax.jit(correct)
  rates = []
  for k in range(num_keys if embed_keys else 1):
    hits = np.concatenate([np.asarray(correct(tokens_NT[i:i + batch_size], i, k))
                           for i in range(0, len(tokens_NT), batch_size)])
    ans, ep = np.asarray(answer_NT)[:, 1:], np.asarray(episode_NT)[:, 1:]
    ok, total = 0, 0
    for r in range(len(tokens_NT)):
      for e in np.unique(ep[r][ans[r]]):
        span = ans[r] & (ep[r] == e)
        ok += bool(hits[r][span].all())
        total += 1
    rates.append(ok / max(total, 1))
  return float(np.mean(rates))
