"""Sequence classification of texts: each label's probability, as `pipeline("text-classification", top_k=None)`
reports them.

Rows are framed and cut as the labelled task frames training examples ([CLS] text, cut to seq_len - 1, [SEP]:
data/tasks.py), padded to seq_len; one program per model, compiled once, with the parameters as an argument.
"""
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data.sources import pad_rows
from data.vocab import Vocabulary
from models.family import as_value


@functools.lru_cache(maxsize=None)
def _program(apply_fn: Callable[..., jax.Array], out_shardings=None):
  def probabilities(params, tokens_BT, segment_ids_BT):
    logits_BC = apply_fn({"params": params}, tokens_BT, segment_ids_BT).astype(jnp.float32)
    return jax.nn.softmax(logits_BC, -1)
  return jax.jit(probabilities, out_shardings=out_shardings)


def label_probabilities(apply_fn: Callable[..., jax.Array], params: Any, vocab: Vocabulary, texts: Sequence[str],
                        seq_len: int, mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """[len(texts), labels] probabilities of a sequence classifier (`apply_fn(variables, tokens, segment_ids)` ->
  logits [B, labels])."""
  rows = [([vocab.cls_id] + vocab.encode(t))[:seq_len - 1] + [vocab.sep_id] for t in texts]
  tokens, segments = pad_rows(rows, seq_len, vocab.pad_id)
  replicated = jax.sharding.NamedSharding(mesh, jax.P()) if mesh is not None else None
  if replicated is not None:
    tokens, segments = jax.device_put(tokens, replicated), jax.device_put(segments, replicated)
  return np.asarray(jax.device_get(_program(as_value(apply_fn), replicated)(params, tokens, segments)))


def describe_labels(probs_C: np.ndarray, names: Sequence[str], top_k: int = 5) -> str:
  """`  json 0.612 | email 0.201 | ...`: the top_k labels, most probable first."""
  order = np.argsort(-probs_C, kind="stable")[:top_k]
  return "  " + " | ".join(f"{names[i]} {probs_C[i]:.3f}" for i in order)
