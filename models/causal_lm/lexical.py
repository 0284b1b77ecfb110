"""Token embeddings and the tied readout of the causal LM: learned, lexinvariant or semi-lexinvariant
(Huang et al. 2023).

  learned       one learned table W [V, D]; x_t = W[x_t], logits = h · Wᵀ (the standard LM)
  lexinvariant  no token parameters: each normal type of a document is a Gaussian vector drawn for that document
                (N(0, 1), or N(0, 1/D) with lex_embed_std="inv_sqrt_d"); the readout is tied to the same vectors,
                logits = s · (LN(h) · Eᵀ) / √D with a learned scalar s (lex_out_scale; without it, LN(h) · Eᵀ).
                Special ids (PAD/CLS/SEP/MASK, those below the vocabulary's first normal id) keep learned rows: they
                carry no identity of a normal token, so the model stays invariant under permutations of the
                normal ids.
  semi          the learned table, but in each document a fraction `semi_fraction` of the normal types present
                (Bernoulli per type) uses a fresh Gaussian vector instead, in the input and the tied readout alike.
                The fresh vectors have the learned table's current entry scale (the RMS of its normal rows,
                without gradient), so a substituted type is not told apart by its norm. semi_fraction = 0 is the
                learned model bit for bit; types absent from the document keep their learned readout rows.

Where the randomness comes from. Every random vector is a pure function of (row key, segment id, token id): the
vector of token v in document s of row b is N(0, σ²I) drawn from fold_in(fold_in(key_b, s), v). The row keys
come from the objective's `prepare` (models/causal_lm/objective.py: fold_in(step key, global row)), so draws are
fresh across rows, steps and packed documents, shared by every occurrence within a document, independent of the
process count and of gradient accumulation, and replayed exactly on resume.

Sampling (`lex_sample`).
  present_types  vectors only for the distinct (document, token) pairs of each row, a static-size
                 `jnp.unique(size=T)` (a row of T tokens has at most T of them, so nothing is ever dropped):
                 memory B·T·D, whatever the vocabulary. Readout at position t: a type of the query's document seen
                 at or before t is scored with its own vector; every other type (absent from the document, or first
                 seen after t: the prediction at t must not depend on later tokens) is scored with one more fresh
                 vector per document (the "unseen" vector, drawn for token id V, which no token has), so they all
                 share one logit. That is itself exactly permutation-equivariant and each absent logit has the law
                 of a fresh type's, but absent types are not independent of each other as in full_vocab: by
                 Jensen the normaliser is a little smaller, so scores are slightly optimistic against full_vocab
                 (0.010-0.015 nats per token on the spec's 3k-step Markov model, RESULTS.md); present-type logits
                 equal full_vocab's (same vectors). The default for packed text (configs/lexinvariant.py:char).
                 Semi: a substituted type first seen after t keeps its learned readout row at t.
  full_vocab     the spec's literal E [B, V, D] per row (vector of v = the draw of (key_b, 1, v)): memory B·V·D;
                 the synthetic-language configs use it.
                 It assumes one document per row; the family refuses it with packed corpora (it would share E
                 between a row's documents).

Legend: B batch, T length, U local types of a row (at most T), V vocabulary, D width, S special ids.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers import Embed, matmul
from models.layers.embeddings import embedding_param, lookup, tied_logits

EMBEDDINGS = ("learned", "lexinvariant", "semi")
LEX_EMBED_STDS = ("one", "inv_sqrt_d")
LEX_SAMPLES = ("present_types", "full_vocab")
_SEMI_TAG = 0x5E41   # folded into a type's key for its semi-lexinvariant coin
_SENTINEL = jnp.iinfo(jnp.int32).max


def type_vectors(keys_B2: jax.Array, segments: jax.Array, tokens: jax.Array, features: int) -> jax.Array:
  """N(0, I) vectors [B, ..., D] of (row key, segment, token): one independent draw per triple."""
  def one(raw_key, seg, tok):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(raw_key), seg), tok)
    return jax.random.normal(key, (features,), jnp.float32)
  flat_seg, flat_tok = segments.reshape(segments.shape[0], -1), tokens.reshape(tokens.shape[0], -1)
  out = jax.vmap(lambda k, s, t: jax.vmap(lambda a, b: one(k, a, b))(s, t))(keys_B2, flat_seg, flat_tok)
  return out.reshape(*segments.shape, features)


def type_coins(keys_B2: jax.Array, segments_BU: jax.Array, tokens_BU: jax.Array) -> jax.Array:
  """Uniform [0, 1) per (row key, segment, token), independent of its vector."""
  def one(raw_key, seg, tok):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(raw_key), seg), tok)
    return jax.random.uniform(jax.random.fold_in(key, _SEMI_TAG))
  return jax.vmap(lambda k, s, t: jax.vmap(lambda a, b: one(k, a, b))(s, t))(keys_B2, segments_BU, tokens_BU)


def local_types(tokens_BT: jax.Array, segment_ids_BT: jax.Array, vocab_size: int, num_special: int):
  """The distinct (document, normal token) pairs of each row, padded to T with a sentinel.

  Returns (seg_BU, tok_BU, valid_BU, index_BT): index_BT is each position's type (meaningless at special ids
  and padding)."""
  T = tokens_BT.shape[1]
  normal = (tokens_BT >= num_special) & (segment_ids_BT > 0)
  code_BT = jnp.where(normal, segment_ids_BT * vocab_size + tokens_BT, _SENTINEL)

  def row(code_T):
    uniq, inv = jnp.unique(code_T, size=T, fill_value=_SENTINEL, return_inverse=True)
    return uniq, inv.reshape(T)
  uniq_BU, index_BT = jax.vmap(row)(code_BT)
  valid_BU = uniq_BU != _SENTINEL
  seg_BU = jnp.where(valid_BU, uniq_BU // vocab_size, 0)
  tok_BU = jnp.where(valid_BU, uniq_BU % vocab_size, 0)
  return seg_BU, tok_BU, valid_BU, index_BT


def _scatter_types(values_BTU: jax.Array, keep_BTU: jax.Array, tok_BU: jax.Array, vocab_size: int):
  """(values [B, T, V], present [B, T, V]): each kept local type's value at its token id (at most one kept type per
  (t, id): types of one document are distinct), zeros elsewhere; adding to zeros keeps the values bit-exact."""
  B, T, _ = values_BTU.shape
  b = jnp.arange(B)[:, None, None]
  t = jnp.arange(T)[None, :, None]
  v = tok_BU[:, None, :]
  vals = jnp.zeros((B, T, vocab_size), values_BTU.dtype).at[b, t, v].add(jnp.where(keep_BTU, values_BTU, 0))
  present = jnp.zeros((B, T, vocab_size), jnp.int32).at[b, t, v].add(keep_BTU.astype(jnp.int32)) > 0
  return vals, present


class LexicalEmbedding(nn.Module):
  """`embed(tokens, segment_ids, keys)` -> x_BTD and the context `attend` needs; `attend(h, context)` -> float32
  logits [B, T, V]. `vectors_BVD` (tests: exact equivariance) replaces the random draw by an explicit per-row
  matrix (one document per row): [B, V, D] for full_vocab, [B, V + 1, D] for present_types (row V: the unseen
  vector)."""
  vocab_size: int
  features: int
  mode: str = "learned"
  num_special: int = 4
  semi_fraction: float = 0.0
  embed_std: str = "one"
  out_scale: bool = True
  sample: str = "present_types"
  init_std: float = 0.02
  dtype: Any = jnp.float32

  def setup(self):
    if self.mode == "lexinvariant":
      std = 1.0 if self.embed_std == "one" else 1.0 / math.sqrt(self.features)
      self.special = Embed(self.num_special, self.features, dtype=self.dtype, init_std=std, axes=(None, "embed"))
      if self.out_scale:
        self.scale = self.param("out_scale", nn.initializers.ones, (), jnp.float32)
    else:   # the learned table at the standard LM's path (wte/embedding): checkpoints carry over both ways
      self.embedding = embedding_param(self, (self.vocab_size, self.features), self.init_std)

  def _std(self) -> jax.Array:
    if self.mode == "lexinvariant":
      return jnp.float32(1.0 if self.embed_std == "one" else 1.0 / math.sqrt(self.features))
    table = jax.lax.stop_gradient(self.embedding[self.num_special:])
    return jnp.sqrt(jnp.mean(jnp.square(table)))

  def embed(self, tokens_BT, segment_ids_BT, keys_B2=None, vectors_BVD=None):
    if self.mode == "learned":
      return lookup(self.embedding, tokens_BT, self.dtype), None
    if keys_B2 is None and vectors_BVD is None:
      raise ValueError(f"model.embedding={self.mode!r} needs per-row embedding keys (the objective's prepare adds "
                       "them as batch['embed_keys'])")
    B, T = tokens_BT.shape
    V, S, dt = self.vocab_size, self.num_special, self.dtype
    std = self._std()
    special_BT = tokens_BT < S
    full = self.sample == "full_vocab"
    ctx = {"tokens": tokens_BT, "segments": segment_ids_BT, "keys": keys_B2, "full": full, "std": std}
    if full:   # one matrix per row
      if vectors_BVD is None:
        vectors_BVD = std * type_vectors(keys_B2, jnp.ones((B, V), jnp.int32), jnp.broadcast_to(jnp.arange(V),
                                                                                               (B, V)), self.features)
      ctx["E_BVD"] = vectors_BVD
      rand_BTD = jnp.take_along_axis(vectors_BVD, tokens_BT[..., None], axis=1)
      if self.mode == "semi":
        ctx["coin_BV"] = type_coins(keys_B2, jnp.ones((B, V), jnp.int32), jnp.broadcast_to(jnp.arange(V), (B, V)))
        coin_BT = jnp.take_along_axis(ctx["coin_BV"], tokens_BT, axis=1)
    else:
      seg_BU, tok_BU, valid_BU, index_BT = local_types(tokens_BT, segment_ids_BT, V, S)
      if vectors_BVD is None:
        E_BUD = std * type_vectors(keys_B2, seg_BU, tok_BU, self.features)
      else:   # explicit vectors [B, V + 1, D]: row V is the unseen vector
        E_BUD = jnp.take_along_axis(vectors_BVD, tok_BU[..., None], axis=1)
        ctx["unseen_BD"] = vectors_BVD[:, V]
      E_BUD = nn.with_logical_constraint(E_BUD, ("batch", None, "embed"))
      # Where each type first occurs in its row: the readout at t scores only types seen at or before t with their
      # own vectors, so a prediction never depends on tokens after it (a valid autoregressive model).
      normal_BT = (tokens_BT >= S) & (segment_ids_BT > 0)
      first_BU = jnp.full((B, T), T, jnp.int32).at[jnp.arange(B)[:, None], index_BT].min(
          jnp.where(normal_BT, jnp.arange(T)[None, :], T))
      ctx.update(seg_BU=seg_BU, tok_BU=tok_BU, valid_BU=valid_BU, E_BUD=E_BUD, first_BU=first_BU)
      rand_BTD = jnp.take_along_axis(E_BUD, index_BT[..., None], axis=1)
      if self.mode == "semi":
        coin_BU = type_coins(keys_B2, seg_BU, tok_BU)
        ctx["coin_BU"] = coin_BU
        coin_BT = jnp.take_along_axis(coin_BU, index_BT, axis=1)
    rand_BTD = rand_BTD.astype(dt)
    if self.mode == "lexinvariant":
      return jnp.where(special_BT[..., None], self.special(tokens_BT), rand_BTD), ctx
    swap_BT = (~special_BT) & (coin_BT < self.semi_fraction)
    return jnp.where(swap_BT[..., None], rand_BTD, lookup(self.embedding, tokens_BT, self.dtype)), ctx

  def attend(self, h_BTD, ctx) -> jax.Array:
    if self.mode == "learned":
      return tied_logits(h_BTD, self.embedding, self.dtype)
    V, S, dt = self.vocab_size, self.num_special, self.dtype
    h = h_BTD.astype(dt)
    if self.mode == "lexinvariant":
      c = (self.scale / math.sqrt(self.features)) if self.out_scale else jnp.float32(1.0)
      special_BTS = matmul.einsum("btd,sd->bts", h, self.special.embedding.astype(dt))
      is_special_V = jnp.arange(V) < S
    if ctx["full"]:
      rand_BTV = matmul.einsum("btd,bvd->btv", h, ctx["E_BVD"].astype(dt))
      if self.mode == "semi":
        swap_BV = (jnp.arange(V) >= S)[None] & (ctx["coin_BV"] < self.semi_fraction)
        return jnp.where(swap_BV[:, None, :], rand_BTV, tied_logits(h_BTD, self.embedding, self.dtype))
      special_BTV = jnp.pad(special_BTS, ((0, 0), (0, 0), (0, V - S)))
      return c * jnp.where(is_special_V, special_BTV, rand_BTV)
    seg_BT, seg_BU = ctx["segments"], ctx["seg_BU"]
    local_BTU = matmul.einsum("btd,bud->btu", h, ctx["E_BUD"].astype(dt))
    seen_BTU = ctx["first_BU"][:, None, :] <= jnp.arange(seg_BT.shape[1])[None, :, None]
    same_BTU = (seg_BU[:, None, :] == seg_BT[:, :, None]) & ctx["valid_BU"][:, None, :] & seen_BTU
    if self.mode == "semi":
      same_BTU = same_BTU & (ctx["coin_BU"] < self.semi_fraction)[:, None, :]
    vals_BTV, present_BTV = _scatter_types(local_BTU, same_BTU, ctx["tok_BU"], V)
    if self.mode == "semi":
      return jnp.where(present_BTV, vals_BTV, tied_logits(h_BTD, self.embedding, self.dtype))
    if "unseen_BD" in ctx:
      unseen_BT = matmul.einsum("btd,bd->bt", h, ctx["unseen_BD"].astype(dt))
    else:
      unseen_BTD = ctx["std"] * type_vectors(ctx["keys"], seg_BT, jnp.full_like(seg_BT, V), self.features)
      unseen_BT = matmul.einsum("btd,btd->bt", h, unseen_BTD.astype(dt))
    base_BTV = jnp.where(is_special_V, jnp.pad(special_BTS, ((0, 0), (0, 0), (0, V - S))), unseen_BT[..., None])
    return c * jnp.where(present_BTV, vals_BTV, base_BTV)
