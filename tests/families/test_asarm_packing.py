"""AS-ARM on packed rows: a document's conditionals do not depend on the other documents of its row (segment
masks and per-document positions, as the pipeline packs them), and the objective uses the pipeline's layout."""
import jax.numpy as jnp
import numpy as np

from decode.assd_exact import build
from models.asarm import canonical_ranks

A, B_LEN, V = 5, 4, 6


def _joint_logits(model, params, tokens, hidden, seg, pos):
  rank = canonical_ranks(jnp.asarray(~hidden))
  m = jnp.asarray([int((~hidden).sum())], jnp.int32)
  targets = np.flatnonzero(hidden[0])[None]
  limit = np.take_along_axis(np.asarray(rank), targets, 1)
  return np.asarray(model.apply({"params": params}, jnp.asarray(tokens), rank, m, jnp.asarray(targets),
                                jnp.asarray(limit), jnp.asarray(seg), jnp.asarray(pos)))


def test_packed_row_equals_each_document_alone():
  model, params = build(vocab=V, seed=0, init_scale=0.6)
  rng = np.random.default_rng(0)
  doc_a, doc_b = rng.integers(0, V, A), rng.integers(0, V, B_LEN)
  hide_a, hide_b = np.array([0, 1, 0, 1, 1], bool), np.array([1, 0, 1, 0], bool)
  packed = np.concatenate([doc_a, doc_b])[None]
  seg = np.array([[1] * A + [2] * B_LEN])
  pos = np.concatenate([np.arange(A), np.arange(B_LEN)])[None]
  hidden = np.concatenate([hide_a, hide_b])[None]
  got = _joint_logits(model, params, packed, hidden, seg, pos)
  # Document A alone (then padding), and document B alone at the start of its own row.
  alone_a = _joint_logits(model, params, np.concatenate([doc_a, np.zeros(B_LEN, int)])[None],
                          np.concatenate([hide_a, np.zeros(B_LEN, bool)])[None],
                          np.array([[1] * A + [0] * B_LEN]), np.arange(A + B_LEN)[None])
  alone_b = _joint_logits(model, params, np.concatenate([doc_b, np.zeros(A, int)])[None],
                          np.concatenate([hide_b, np.zeros(A, bool)])[None],
                          np.array([[1] * B_LEN + [0] * A]), np.arange(A + B_LEN)[None])
  n_a = int(hide_a.sum())
  np.testing.assert_allclose(got[0, :n_a], alone_a[0], atol=1e-5)
  np.testing.assert_allclose(got[0, n_a:], alone_b[0], atol=1e-5)
  # Negative control: without segment ids the documents see each other and the logits move.
  leaky = _joint_logits(model, params, packed, hidden, np.ones_like(seg), pos)
  assert np.abs(leaky[0, :n_a] - alone_a[0]).max() > 1e-3
