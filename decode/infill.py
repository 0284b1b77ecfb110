"""Infilling with an any-subset AR model: text with "[MASK]" holes in, text with the holes filled out.

Each "[MASK]" stands for exactly one token (write as many as the hole should hold; `hole(n)` builds one). The
visible tokens (all others, in any position) are the prompt; the holes are generated left to right along the
canonical order, by ASSD (`sampler="assd"`, k drafts per round) or one token per call (`"sequential"`); both
sample the model's joint exactly, so they differ only in speed. `cache=True` (default) decodes over the rank
cache (decode/assd_cached.py), `cache=False` re-encodes the row at every call (the oracle); same draws.
"""
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data.sources import framed_rows, pad_rows
from data.vocab import Vocabulary
from decode.assd import assd_sample, sequential_sample
from decode.assd_cached import assd_sample_cached, sequential_sample_cached
from models.asarm.masks import canonical_ranks
from models.family import as_value

MASK = "[MASK]"


def hole(num_tokens: int) -> str:
  return MASK * num_tokens


def encode_rows(vocab: Vocabulary, texts: Sequence[str], seq_len: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
  """[CLS] text [SEP] per row, right-padded: (tokens [B, N], valid [B, N], lengths)."""
  rows = framed_rows(vocab, texts, seq_len)
  tokens, real = pad_rows(rows, seq_len, vocab.pad_id)
  return tokens, real.astype(bool), [len(r) for r in rows]


def infill_tokens(apply_fn, params: Any, tokens_BN: np.ndarray, valid_BN: np.ndarray, *, mask_id: int,
                  sampler: str = "assd", k: int = 5, temperature: float = 1.0, seed: int = 0,
                  vocab_limit: int | None = None, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Fills every mask_id position of each row (padding excluded). Returns (tokens, NFE per row)."""
  hidden = (tokens_BN == mask_id) & valid_BN
  rank = canonical_ranks(jnp.asarray(~hidden))
  m = jnp.asarray(tokens_BN.shape[1] - hidden.sum(1), jnp.int32)
  args = (as_value(apply_fn), params, jnp.asarray(tokens_BN), rank, m, jax.random.PRNGKey(seed), jnp.asarray(valid_BN))
  if sampler == "assd":
    out, nfe, _ = (assd_sample_cached if cache else assd_sample)(*args, k=k, mask_id=mask_id,
                                                                 temperature=temperature, vocab_limit=vocab_limit)
  elif sampler == "sequential":
    out, nfe, _ = (sequential_sample_cached if cache else sequential_sample)(
        *args, mask_id=mask_id, temperature=temperature, vocab_limit=vocab_limit)
  else:
    raise ValueError(f"sampler={sampler!r}: use 'assd' or 'sequential'")
  return np.asarray(out), np.asarray(nfe)


def infill_texts(apply_fn, params: Any, vocab: Vocabulary, texts: Sequence[str], seq_len: int, *,
                 sampler: str = "assd", k: int = 5, temperature: float = 1.0, seed: int = 0, cache: bool = True
                 ) -> tuple[list[str], list[int]]:
  """Fills the "[MASK]"s of each text (truncated to seq_len tokens with CLS and SEP). Returns (texts, NFE)."""
  tokens, valid, lengths = encode_rows(vocab, texts, seq_len)
  out, nfe = infill_tokens(apply_fn, params, tokens, valid, mask_id=vocab.mask_id, sampler=sampler, k=k,
                           temperature=temperature, seed=seed, vocab_limit=vocab.size, cache=cache)
  return [vocab.decode(out[i, 1:n - 1]) for i, n in enumerate(lengths)], [int(x) for x in nfe]
