"""Shared layers and the ModernBERT MLM: masks, RoPE, packing isolation, parameter count, objective, mask filling."""
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from data.vocab import MASK, ByteVocabulary
from decode.fill_mask import fill_mask_texts
from models.layers import SelfAttention, attention_mask, apply_rope
from models.layers.mlp import activation
from models.modernbert import MaskedLmObjective, ModernBertConfig, ModernBertForMaskedLM

TINY = ModernBertConfig(vocab_size=64, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=48,
                        global_attn_every_n_layers=2, local_attention=8)


@pytest.fixture(scope="module")
def tiny_model():
  model = ModernBertForMaskedLM(TINY)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32), jnp.int32))["params"]
  params = jax.tree.map(lambda p: p.unbox() if hasattr(p, "unbox") else p, params,
                        is_leaf=lambda p: hasattr(p, "unbox"))
  # Unit-scale weights: with the default 0.02 init, bugs in masks or activations hide below tolerance.
  params = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(p.size), p.shape) * (
      1.0 if p.ndim == 1 else 1 / math.sqrt(p.shape[0])), params)
  return model, params


def test_attention_mask_segments_padding_window_causal():
  seg = jnp.array([[1, 1, 1, 2, 2, 0]])
  m = np.asarray(attention_mask(seg))[0, 0]
  assert m[0, 2] and not m[0, 3] and m[3, 4] and not m[4, 1]      # documents are isolated
  assert not m[:, 5].any() and not m[5].any()                      # padding is never attended, pads see nothing
  w = np.asarray(attention_mask(jnp.ones((1, 9), jnp.int32), half_window=2))[0, 0]
  i, j = np.indices((9, 9))
  np.testing.assert_array_equal(w, np.abs(i - j) <= 2)
  c = np.asarray(attention_mask(jnp.ones((1, 5), jnp.int32), causal=True))[0, 0]
  np.testing.assert_array_equal(c, j[:5, :5] <= i[:5, :5])


def test_rope_preserves_norm_and_depends_only_on_relative_position():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
  rot = lambda x, p: apply_rope(x, jnp.array([[p]]), 10_000.0)[0, 0, 0]  # noqa: E731
  np.testing.assert_allclose(jnp.linalg.norm(rot(q, 7)), jnp.linalg.norm(q), rtol=1e-6)
  dots = [float(rot(q, p + 5) @ rot(k, p)) for p in (0, 3, 100)]
  np.testing.assert_allclose(dots, dots[0], rtol=1e-4)
  assert abs(float(rot(q, 6) @ rot(k, 0)) - dots[0]) > 1e-3
  # Rotate-half pairs (j, j + Dh/2): at position 1 the first pair rotates by exactly 1 radian.
  e = jnp.zeros((1, 1, 1, 16)).at[..., 0].set(1.0)
  r = rot(e, 1)
  np.testing.assert_allclose([r[0], r[8]], [math.cos(1.0), math.sin(1.0)], rtol=1e-6)


def test_rope_table_equals_direct_rope_and_is_computed_once_per_table_row():
  """apply_rope(table_size=T) gathers cos / sin from a [T, Dh] table: the same rotation as from the positions
  directly (values and gradient), NaN outside the table, and in the compiled gradient of a layer every sine and
  cosine runs on the table's [T, Dh] shape (from [B, T] positions XLA:CPU recomputed them per head element)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 12, 4, 16)), jnp.float32)
  pos = jnp.asarray(rng.integers(0, 12, (3, 12)))
  w = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  f = lambda x, t: jnp.sum(jnp.tanh(apply_rope(x, pos, 500.0, t)) * w)  # noqa: E731
  np.testing.assert_allclose(apply_rope(x, pos, 500.0, 12), apply_rope(x, pos, 500.0), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jax.grad(f)(x, 12), jax.grad(f)(x, None), rtol=1e-6, atol=1e-6)
  assert np.isnan(np.asarray(apply_rope(x, pos.at[0, 0].set(12), 500.0, 12)[0, 0])).all()
  hlo = jax.jit(jax.grad(f), static_argnums=1).lower(x, 12).compile().as_text()
  shapes = re.findall(r"= f32\[([\d,]*)\][^ ]* (?:sine|cosine)\(", hlo)
  assert shapes and set(shapes) == {"12,16"}, shapes
  hlo = jax.jit(jax.grad(f), static_argnums=1).lower(x, None).compile().as_text()
  assert set(re.findall(r"= f32\[([\d,]*)\][^ ]* (?:sine|cosine)\(", hlo)) != {"12,16"}   # the check can fail


def test_sliding_window_attention_ignores_keys_outside_the_window():
  attn = SelfAttention(num_heads=2, head_dim=8, rope_theta=10_000.0, half_window=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 12, 16))
  seg, pos = jnp.ones((1, 12), jnp.int32), jnp.arange(12)[None]
  params = attn.init(jax.random.PRNGKey(1), x, seg, pos)
  y = attn.apply(params, x, seg, pos)
  far = attn.apply(params, x.at[0, 9].add(5.0), seg, pos)      # |6 - 9| = 3 > 2
  near = attn.apply(params, x.at[0, 8].add(5.0), seg, pos)     # |6 - 8| = 2
  np.testing.assert_allclose(far[0, 6], y[0, 6], atol=1e-6)
  assert np.max(np.abs(near[0, 6] - y[0, 6])) > 1e-3


def test_packed_documents_equal_separate_runs(tiny_model):
  model, params = tiny_model
  rng = np.random.default_rng(0)
  a, b = rng.integers(4, 64, 11), rng.integers(4, 64, 14)
  T = 32
  packed = np.zeros((1, T), np.int32)
  packed[0, :11], packed[0, 11:25] = a, b
  seg = np.zeros((1, T), np.int32)
  seg[0, :11], seg[0, 11:25] = 1, 2
  pos = np.zeros((1, T), np.int32)
  pos[0, :11], pos[0, 11:25] = np.arange(11), np.arange(14)
  out = model.apply({"params": params}, packed, seg, pos)
  for doc, sl in ((a, slice(0, 11)), (b, slice(11, 25))):
    alone = np.zeros((1, T), np.int32)
    alone[0, :len(doc)] = doc
    alone_seg = (np.arange(T) < len(doc)).astype(np.int32)[None]
    ref = model.apply({"params": params}, alone, alone_seg)
    np.testing.assert_allclose(out[0, sl], ref[0, :len(doc)], atol=1e-5, rtol=0)
  # The oracle can fail: without segment ids the second document sees the first.
  leaky = model.apply({"params": params}, packed, (seg > 0).astype(np.int32), pos)
  assert np.max(np.abs(leaky[0, 11:25] - out[0, 11:25])) > 1e-3


def test_padding_does_not_change_real_positions(tiny_model):
  model, params = tiny_model
  toks = np.random.default_rng(1).integers(4, 64, (1, 32)).astype(np.int32)
  seg = (np.arange(32) < 20).astype(np.int32)[None]
  y1 = model.apply({"params": params}, toks, seg)
  toks2 = toks.copy()
  toks2[0, 20:] = 7
  y2 = model.apply({"params": params}, toks2, seg)
  np.testing.assert_allclose(y1[0, :20], y2[0, :20], atol=1e-6)


def test_parameter_count_matches_hugging_face_modernbert_base():
  # 149,655,232 = ModernBertForMaskedLM(ModernBertConfig()) in transformers (tied decoder counted once).
  model = ModernBertForMaskedLM(ModernBertConfig(vocab_size=50368))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32)))["params"]
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert n == 149_655_232
  assert "attn_norm" not in shapes["model"]["layers_0"] and "attn_norm" in shapes["model"]["layers_1"]


def test_gelu_is_the_exact_erf_form():
  x = np.linspace(-12, 12, 2001).astype(np.float32)
  np.testing.assert_allclose(activation("gelu")(x), 0.5 * x * (1 + special.erf(x / np.sqrt(2))), atol=1e-6)
  slope = jax.vmap(jax.grad(activation("gelu")))(x)
  phi = np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
  np.testing.assert_allclose(slope, 0.5 * (1 + special.erf(x / np.sqrt(2))) + x * phi, atol=2e-6)   # Phi + x phi
  assert np.max(np.abs(activation("gelu_new")(x) - activation("gelu")(x))) > 1e-4


def test_mlm_corruption_rates_and_loss():
  obj = MaskedLmObjective(vocab_size=260, mask_id=MASK, special_ids=(0, 1, 2, 3), random_low=4, mask_rate=0.3,
                          sparse_head=False)   # the fake apply_fn below returns every position's logits
  rng = np.random.default_rng(0)
  tokens = rng.integers(4, 260, (64, 512)).astype(np.int32)
  tokens[:, 0] = 1
  seg = np.ones_like(tokens)
  seg[:, 400:] = 0
  batch = obj.prepare({"tokens": jnp.asarray(tokens), "segment_ids": jnp.asarray(seg),
                       "positions": jnp.zeros_like(tokens)}, jax.random.PRNGKey(0))
  w, inputs = np.asarray(batch["weights"]), np.asarray(batch["inputs"])
  selected = w > 0
  assert not selected[:, 0].any() and not selected[:, 400:].any()   # specials and padding never selected
  assert abs(selected[:, 1:400].mean() - 0.3) < 0.01
  np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-5)
  sel_in, sel_tok = inputs[selected], tokens[selected]
  frac_mask = (sel_in == MASK).mean()
  frac_same = (sel_in == sel_tok).mean()
  assert abs(frac_mask - 0.8) < 0.01
  assert abs(frac_same - (0.1 + 0.1 / 256)) < 0.01            # unchanged, plus random draws that hit the original
  assert ((sel_in >= 4) | (sel_in == MASK)).all()
  np.testing.assert_array_equal(inputs[~selected], tokens[~selected])
  # Loss: mean cross-entropy over selected positions only.
  logits = jnp.asarray(rng.normal(size=(64, 512, 260)), jnp.float32)
  loss, metrics = obj.loss(lambda v, *a: logits, None, batch, None)
  logp = jax.nn.log_softmax(logits)
  nll = -np.take_along_axis(np.asarray(logp), tokens[..., None], -1)[..., 0]
  np.testing.assert_allclose(loss, nll[selected].mean(), rtol=1e-5)
  assert metrics["num_targets"] == selected.sum()


@pytest.mark.parametrize("cap", [None, 8])
def test_prediction_cap_and_sparse_head_give_the_dense_loss_and_gradient(cap):
  """At most max_predictions positions per row are selected (a random subset of the Bernoulli draw), and the sparse
  head (head and decoder at those slots only) gives the dense head's loss, metrics and gradient. cap=8 binds in
  most rows (the slots are full); the default (mean + 4 sd: 32 of 48 at 30%) in none here."""
  cfg = ModernBertConfig(vocab_size=260, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=48,
                         local_attention=8, global_attn_every_n_layers=2)
  model = ModernBertForMaskedLM(cfg)
  kw = dict(vocab_size=260, mask_id=MASK, special_ids=(0, 1, 2, 3), random_low=4, mask_rate=0.3)
  sparse = MaskedLmObjective(**kw, max_predictions_per_row=cap)
  dense = MaskedLmObjective(**kw, max_predictions_per_row=cap, sparse_head=False)
  uncapped = MaskedLmObjective(**kw, max_predictions_per_row=10_000, sparse_head=False)
  B, T = 8, 48
  M = 8 if cap else 32
  assert sparse.prediction_slots(T) == M and dense.prediction_slots(T) is None and uncapped.max_predictions(T) == T
  tokens = jnp.asarray(np.random.default_rng(1).integers(4, 260, (B, T)), jnp.int32)
  raw = {"tokens": tokens, "segment_ids": jnp.ones((B, T), jnp.int32),
         "positions": jnp.broadcast_to(jnp.arange(T), (B, T))}
  key = jax.random.PRNGKey(3)
  batch, free = sparse.prepare(raw, key), uncapped.prepare(raw, key)
  selected, drawn = np.asarray(batch["weights"] > 0), np.asarray(free["weights"] > 0)
  np.testing.assert_array_equal(selected.sum(1), np.minimum(drawn.sum(1), M))
  assert not (selected & ~drawn).any()                       # a subset of the Bernoulli draw
  np.testing.assert_array_equal(np.asarray(batch["inputs"])[~selected], np.asarray(tokens)[~selected])
  if cap:
    assert (drawn.sum(1) > M).sum() >= 6                    # the cap binds, and keeps scattered positions
    assert (np.argmax(np.cumsum(selected, 1) == M, 1) > np.argmax(np.cumsum(drawn, 1) == M, 1)).any()
  params = model.init(jax.random.PRNGKey(0), tokens)["params"]
  calls = []

  def apply_fn(variables, *args, **kwargs):
    calls.append(kwargs.get("predict_at_BM") is not None)
    return model.apply(variables, *args, **kwargs)

  def value_and_grad(obj):
    return jax.jit(jax.value_and_grad(lambda p: obj.loss(apply_fn, p, batch, None), has_aux=True))(params)

  (loss_s, m_s), g_s = value_and_grad(sparse)
  (loss_d, m_d), g_d = value_and_grad(dense)
  assert calls == [True, False]
  np.testing.assert_allclose(loss_s, loss_d, rtol=1e-6)
  for k in m_d:
    np.testing.assert_allclose(m_s[k], m_d[k], rtol=1e-6)
  assert m_s["num_targets"] == selected.sum()
  for a, b in zip(jax.tree.leaves(g_s), jax.tree.leaves(g_d)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  at = np.argsort(~selected, axis=1, kind="stable")[:, :M]     # the model's logits at the slots = dense ones there
  logits = model.apply({"params": params}, *(batch[k] for k in ("inputs", "segment_ids", "positions")),
                       predict_at_BM=jnp.asarray(at))
  full = model.apply({"params": params}, *(batch[k] for k in ("inputs", "segment_ids", "positions")))
  np.testing.assert_allclose(logits, np.take_along_axis(np.asarray(full), at[..., None], axis=1), atol=2e-5)


def test_fill_mask_fills_every_mask_with_allowed_ids():
  vocab = ByteVocabulary()
  favourite = vocab.encode("z")[0]

  def apply_fn(variables, tokens, segment_ids):
    del variables, segment_ids
    # A "model" that always prefers [MASK] itself, then a special id, then "z".
    logits = jnp.zeros(tokens.shape + (vocab.size,))
    return logits.at[..., MASK].set(9.0).at[..., 1].set(8.0).at[..., favourite].set(5.0)

  out = fill_mask_texts(apply_fn, None, vocab, ["a[MASK]b[MASK]", "[MASK]"], seq_len=16)
  assert out == ["azbz", "z"]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_cache_writes_store_the_values_at_their_slots_and_offsets(dtype):
  """write_slots / write_cache scatter 16-bit caches as their bits (XLA:CPU upcasts 16-bit float scatters): the
  stored values are the new entries rounded to the cache's dtype, other entries untouched, slots >= S dropped."""
  from models.layers.attention import write_cache, write_slots
  rng = np.random.default_rng(0)
  B, H, S, D, T = 2, 3, 7, 4, 3
  mem = jnp.asarray(rng.normal(size=(B, H, S, D)), dtype)
  new = jnp.asarray(rng.normal(size=(B, T, H, D)), jnp.float32)
  slot = jnp.asarray([[5, 0, S], [2, 6, 3]])                     # row 0's third token is not stored
  want = np.asarray(mem.astype(jnp.float32)).copy()
  new_r = np.asarray(new.astype(dtype).astype(jnp.float32))
  for b in range(B):
    for t in range(T):
      if slot[b, t] < S:
        want[b, :, int(slot[b, t])] = new_r[b, t]
  got = write_slots(mem, new, slot, 2)
  assert got.dtype == dtype
  np.testing.assert_array_equal(np.asarray(got.astype(jnp.float32)), want)
  got_t = write_slots(mem.transpose(0, 1, 3, 2), new, slot, 3)  # keys laid out [B, H, D, S]
  np.testing.assert_array_equal(np.asarray(got_t.astype(jnp.float32)), want.transpose(0, 1, 3, 2))
  cache = mem.transpose(0, 2, 1, 3)                              # [B, S, H, D], rows start_B..
  start = jnp.asarray([0, 4])
  want_c = np.asarray(cache.astype(jnp.float32)).copy()
  for b in range(B):
    want_c[b, int(start[b]):int(start[b]) + T] = new_r[b]
  got_c = write_cache(cache, new, start)
  assert got_c.dtype == dtype
  np.testing.assert_array_equal(np.asarray(got_c.astype(jnp.float32)), want_c)


def test_einsum_attention_matches_jax_reference_including_gradients():
  from models.layers.attention import dot_product_attention
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  q, k, v = (jax.random.normal(r, (2, 10, 3, 8)) for r in (k1, k2, k3))
  seg = jnp.array([[1] * 6 + [2] * 3 + [0], [1] * 10])
  mask = attention_mask(seg, half_window=3)

  def loss(impl):
    return lambda q, k, v: jnp.sum(jnp.sin(dot_product_attention(q, k, v, mask, 8 ** -0.5, impl)[:, :9]))

  ours = jax.value_and_grad(loss("einsum"), argnums=(0, 1, 2))(q, k, v)
  ref = jax.value_and_grad(loss("xla"), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  out = dot_product_attention(q, k, v, mask, 8 ** -0.5)
  assert np.isfinite(np.asarray(out)).all()            # the padding query (fully masked) stays finite


def test_cross_entropy_matches_optax_and_accuracy_matches_argmax():
  import optax
  from models.losses import cross_entropy_with_accuracy
  logits = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 50)) * 5
  targets = jax.random.randint(jax.random.PRNGKey(1), (3, 7), 0, 50)
  targets = targets.at[0, :3].set(jnp.argmax(logits[0, :3], -1))
  nll, correct = cross_entropy_with_accuracy(logits, targets)
  np.testing.assert_allclose(nll, optax.softmax_cross_entropy_with_integer_labels(logits, targets), rtol=1e-5)
  np.testing.assert_array_equal(correct, jnp.argmax(logits, -1) == targets)
  g = jax.grad(lambda x: cross_entropy_with_accuracy(x, targets)[0].sum())(logits)
  g_ref = jax.grad(lambda x: optax.softmax_cross_entropy_with_integer_labels(x, targets).sum())(logits)
  np.testing.assert_allclose(g, g_ref, atol=1e-6)


# Windowed (both directions: the banded kernel's explicit backward sums cotangents from both neighbouring blocks),
# chunked causal and chunked bidirectional run by default; the three other combinations are slow.
@pytest.mark.parametrize("half_window, causal, chunk", [
    (8, True, 512), (8, False, 512), (None, False, 8), (None, True, 8)] + [
        pytest.param(*a, marks=pytest.mark.slow) for a in ((None, False, 512), (None, True, 512), (3, False, 512))])
def test_memory_efficient_attention_equals_dense_with_gradients(half_window, causal, chunk):
  """chunk 8 < T = 37: five query chunks, the last one padded (T is not a multiple of the chunk)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 37, 16))
  seg = jnp.array([[1] * 20 + [2] * 15 + [0] * 2, [1] * 37])
  pos = jnp.broadcast_to(jnp.arange(37), (2, 37))
  dense = SelfAttention(2, 8, 1e4, half_window=half_window, causal=causal)
  chunked = SelfAttention(2, 8, 1e4, half_window=half_window, causal=causal, implementation="chunked",
                          chunk_size=chunk)
  params = dense.init(jax.random.PRNGKey(1), x, seg, pos)
  real = (seg > 0)[..., None]

  def loss(m):
    return lambda p, x: jnp.sum(jnp.where(real, jnp.sin(m.apply(p, x, seg, pos)), 0.0))

  (l1, g1), (l2, g2) = (jax.value_and_grad(loss(m), argnums=(0, 1))(params, x) for m in (dense, chunked))
  np.testing.assert_allclose(l1, l2, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_sliding_window_memory_grows_linearly_with_length():
  from models.layers.attention import banded_attention, dot_product_attention

  def temp_bytes(fn, T):
    q = jax.ShapeDtypeStruct((1, T, 4, 32), jnp.float32)
    seg = jax.ShapeDtypeStruct((1, T), jnp.int32)
    return jax.jit(fn).lower(q, q, q, seg).compile().memory_analysis().temp_size_in_bytes

  banded = lambda q, k, v, s: banded_attention(q, k, v, s, 64, 0.1)  # noqa: E731
  dense = lambda q, k, v, s: dot_product_attention(q, k, v, attention_mask(s, half_window=64), 0.1)  # noqa: E731
  b1, b2 = temp_bytes(banded, 2048), temp_bytes(banded, 4096)
  d1, d2 = temp_bytes(dense, 2048), temp_bytes(dense, 4096)
  assert b2 / b1 < 2.3, (b1, b2)       # linear in T
  assert d2 / d1 > 3.5, (d1, d2)       # the oracle can fail: the dense masked form is quadratic
  assert b2 < d2 / 10


def test_flop_model_matches_the_spec_table_for_modernbert_base():
  # the ModernBERT/ELECTRA method note §7: S = 512 forward 333.74 MFLOP/token dense, 299.14 + 18.13 windowed.
  cfg = ModernBertConfig(vocab_size=50368)
  assert cfg.matmul_params() == 149_569_536
  assert abs(cfg.flops_per_token(512, train=False, count="dense") - 333.742e6) < 1e3
  assert abs(cfg.flops_per_token(512, train=False, count="window") - 317.27e6) < 1e4
  # Executed (the trainer's MFU): the 14 banded layers compute 64-row blocks against 3 x 64 = 192 keys.
  assert cfg.flops_per_token(512, train=False) == 2 * 149_569_536 + 4 * 768 * (8 * 512 + 14 * 192)
  assert ModernBertConfig(vocab_size=50368, attention_impl="einsum").flops_per_token(512) == \
      cfg.flops_per_token(512, count="dense")
  assert cfg.flops_per_token(512) == 3 * cfg.flops_per_token(512, train=False)
  # The sparse MLM head (200 slots of 512 at 30% masking) runs the head's dense layer and decoder on 200 rows.
  assert MaskedLmObjective(vocab_size=50368, mask_id=4, special_ids=(0,), mask_rate=0.3).prediction_slots(512) == 200
  assert cfg.flops_per_token(512, train=False, head_rows=200 / 512) == \
      cfg.flops_per_token(512, train=False) - 2 * (1 - 200 / 512) * 768 * (768 + 50368)


def test_auto_attention_runs_short_sliding_window_layers_dense_and_counts_them_so():
  """attention.use_banded: at T <= 4C (C = the half window) "auto" runs sliding-window layers on the dense masked
  scores (faster there, bench/attention_impl.py) and the executed-FLOP count says S keys; above, banded (3C keys)."""
  from models.layers.attention import use_banded
  assert not use_banded(128, 32) and use_banded(129, 32) and use_banded(512, 64)
  base = ModernBertConfig(vocab_size=50368)
  assert base.flops_per_token(256) == base.flops_per_token(256, count="dense")     # 256 = 4 x 64
  assert base.flops_per_token(512) < base.flops_per_token(512, count="dense")
  cfg = ModernBertConfig(vocab_size=61, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=48,
                         global_attn_every_n_layers=2, local_attention=8)      # layer 1: window, half 4

  def banded_products(T):   # the banded kernel's products give [B, blocks, ...] (rank 5; QKV's is [B, T, 3, H, D])
    ids = jnp.ones((2, T), jnp.int32)
    params = jax.eval_shape(lambda: ModernBertForMaskedLM(cfg).init(jax.random.PRNGKey(1), ids))["params"]
    text = str(jax.make_jaxpr(lambda p: ModernBertForMaskedLM(cfg).apply({"params": p}, ids))(params))
    return sum(int(n) != T for n in re.findall(r"f32\[\d+,(\d+),\d+,\d+,\d+\] = dot_general", text))

  assert banded_products(16) == 0                               # T = 16 = 4 x 4: dense
  assert banded_products(24) == 2                               # T = 24 > 16: banded (scores and weighted sum)


def test_remat_policies_compute_the_same_gradients():
  """Rematerialisation changes what is stored, never the result: the tiny config's loss gradient under each
  model.remat policy equals the gradient without remat (float32, to rounding)."""
  import jax
  from data.vocab import ByteVocabulary
  from configs import families
  from tests.helpers import tiny_config
  grads = {}
  for policy in ("none", "full", "dots_saveable"):   # "offload": the same policy object with another destination
    fam = families.build(tiny_config(**{"model.remat": policy}), ByteVocabulary())
    params = fam.init_variables(jax.random.PRNGKey(0))["params"]
    batch = {k: jnp.ones((2, *f.shape), f.dtype) for k, f in fam.batch_spec.items()}
    batch = fam.objective.prepare(batch, jax.random.PRNGKey(1), step=0)
    loss = lambda p: fam.objective.loss(fam.module.apply, p, batch, jax.random.PRNGKey(2))[0]  # noqa: E731
    grads[policy] = jax.grad(loss)(params)
  for policy in ("full", "dots_saveable"):
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(grads[policy]),
                                                               jax.tree.leaves(grads["none"])))
    assert diff < 1e-6, (policy, diff)
