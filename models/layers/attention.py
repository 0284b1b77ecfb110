"""Multi-head self-attention with segment ids (packing and padding), causal and sliding-window masks."""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers import matmul, splash
from models.layers.linear import Linear
from models.layers.platform import platform
from models.layers.rope import apply_rope


def attention_mask(segment_ids_BT: jax.Array, *, causal: bool = False, half_window: int | None = None) -> jax.Array:
  """Boolean mask [B, 1, T, T]: query i may attend key j.

  Segment id 0 marks padding: a padding key is never attended to, and tokens attend only inside their own
  segment, so packed documents never see each other. `half_window=w` keeps keys with |i - j| <= w (ModernBERT's
  local layers use w = local_attention // 2, i.e. 2w + 1 keys). Padding queries see nothing; the attention
  kernel gives them finite values, which losses ignore.
  """
  seg_q = segment_ids_BT[:, :, None]
  seg_k = segment_ids_BT[:, None, :]
  allowed = (seg_q == seg_k) & (seg_k != 0)
  T = segment_ids_BT.shape[1]
  i = jnp.arange(T)[:, None]
  j = jnp.arange(T)[None, :]
  if causal:
    allowed &= (j <= i)[None]
  if half_window is not None:
    allowed &= (jnp.abs(i - j) <= half_window)[None]
  return allowed[:, None]


def dot_product_attention(q_BTHD: jax.Array, k_BSHD: jax.Array, v_BSHD: jax.Array, mask_B1TS: jax.Array,
                          scale: float, implementation: str = "einsum",
                          dropout: tuple[float, jax.Array] | None = None) -> jax.Array:
  """softmax(q k^T · scale, masked) v with float32 logits and softmax; [B, T, H, Dh] in and out.

  "einsum" (default) is written out with the scale folded into q and a finite mask value; on CPU the gradient of
  the attention core is 1.37x (global) to 1.47x (window 64) faster than `jax.nn.dot_product_attention`'s XLA
  path at ModernBERT-base shapes, with gradients equal to 5e-7 (bench/attention_impl.py, BENCHMARKS.md). "xla"
  and "cudnn" call `jax.nn.dot_product_attention` (use "cudnn", with 16-bit inputs, for fused flash attention on
  NVIDIA GPUs). Fully masked query rows (padding) get finite values, never NaN.
  `dropout=(rate, rng)` drops attention probabilities (inverted scaling, as GPT-2's attn_pdrop); "einsum" only.
  """
  if dropout is not None and implementation != "einsum":
    raise ValueError(f"attention dropout runs in the 'einsum' kernel only; set model.attention_impl='einsum' (now "
                     f"{implementation!r}) or model.dropout_rate=0")
  if implementation in ("xla", "cudnn"):
    return jax.nn.dot_product_attention(q_BTHD, k_BSHD, v_BSHD, mask=mask_B1TS, scale=scale,
                                        implementation=implementation)
  if implementation != "einsum":
    raise ValueError(f"model.attention_impl={implementation!r}: use 'einsum', 'chunked', 'xla' or 'cudnn'")
  logits_BHTS = matmul.einsum("bthd,bshd->bhts", q_BTHD * jnp.asarray(scale, q_BTHD.dtype), k_BSHD)
  logits_BHTS = jnp.where(mask_B1TS, logits_BHTS, jnp.finfo(jnp.float32).min)
  probs_BHTS = jax.nn.softmax(logits_BHTS, axis=-1)
  if dropout is not None:
    rate, rng = dropout
    keep = jax.random.bernoulli(rng, 1.0 - rate, probs_BHTS.shape)
    probs_BHTS = jnp.where(keep, probs_BHTS / (1.0 - rate), 0.0)
  probs_BHTS = probs_BHTS.astype(v_BSHD.dtype)
  return matmul.einsum("bhts,bshd->bthd", probs_BHTS, v_BSHD).astype(v_BSHD.dtype)


def use_banded(seq_len: int, half_window: int) -> bool:
  """Whether "auto" runs a sliding-window layer banded (3C keys per query in blocks of C = half_window) rather than
  on the dense masked scores (seq_len keys): where T > 4C. At T = 4C the banded kernel reads 3/4 of the keys but
  pays its pads and block copies: the attention gradient ran 0.63-0.86x the dense einsum's speed there, 1.08x at
  T = 6C, 1.11-1.83x at T >= 8C (bench/attention_impl.py, BENCHMARKS.md). Both compute the same attention."""
  return seq_len > 4 * max(half_window, 1)


def _segment_allowed(seg_q, seg_k):
  return (seg_q[..., :, None] == seg_k[..., None, :]) & (seg_k[..., None, :] != 0)


def banded_attention(q_BTHD: jax.Array, k_BTHD: jax.Array, v_BTHD: jax.Array, segment_ids_BT: jax.Array,
                     half_window: int, scale: float, causal: bool = False) -> jax.Array:
  """Sliding-window attention (|i - j| <= half_window) that never builds a T x T matrix.

  The sequence is cut into blocks of C = half_window rows; each query block attends to its own and its two
  neighbouring key blocks (3C keys), which contain every key within the window. Memory and compute are linear in T.
  """
  B, T, H, D = q_BTHD.shape
  C = max(half_window, 1)
  nb = -(-T // C)
  pad = nb * C - T
  padT = lambda x: jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))  # noqa: E731
  q, k, v, seg = padT(q_BTHD), padT(k_BTHD), padT(v_BTHD), padT(segment_ids_BT)

  def neighbours(x):   # [B, nb*C, ...] -> [B, nb, 3C, ...]: blocks i-1, i, i+1
    xb = x.reshape(B, nb, C, *x.shape[2:])
    xb = jnp.pad(xb, [(0, 0), (1, 1)] + [(0, 0)] * (xb.ndim - 2))
    return jnp.concatenate([xb[:, :-2], xb[:, 1:-1], xb[:, 2:]], axis=2)

  kb, vb, segk = neighbours(k), neighbours(v), neighbours(seg)
  qb, segq = q.reshape(B, nb, C, H, D), seg.reshape(B, nb, C)
  q_idx = jnp.arange(nb)[:, None] * C + jnp.arange(C)[None, :]              # [nb, C]
  k_idx = jnp.arange(nb)[:, None] * C - C + jnp.arange(3 * C)[None, :]      # [nb, 3C]
  dist = q_idx[:, :, None] - k_idx[:, None, :]
  allowed = (jnp.abs(dist) <= half_window) & (k_idx[:, None, :] >= 0)
  if causal:
    allowed &= dist >= 0
  allowed = allowed[None] & _segment_allowed(segq, segk)                     # [B, nb, C, 3C]
  logits = matmul.einsum("bnchd,bnkhd->bnhck", qb * jnp.asarray(scale, qb.dtype), kb)
  logits = jnp.where(allowed[:, :, None], logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(vb.dtype)
  out = matmul.einsum("bnhck,bnkhd->bnchd", probs, vb).astype(v_BTHD.dtype)
  return out.reshape(B, nb * C, H, D)[:, :T]


def chunked_attention(q_BTHD: jax.Array, k_BTHD: jax.Array, v_BTHD: jax.Array, segment_ids_BT: jax.Array,
                      scale: float, causal: bool = False, chunk: int = 512) -> jax.Array:
  """Full attention computed `chunk` queries at a time (lax.map of a rematerialised block): the largest live
  score block is [B, H, chunk, T] in the forward and in the backward, instead of [B, H, T, T]."""
  B, T, H, D = q_BTHD.shape
  C = min(chunk, T)
  nq = -(-T // C)
  pad = nq * C - T
  q = jnp.pad(q_BTHD, [(0, 0), (0, pad), (0, 0), (0, 0)]).reshape(B, nq, C, H, D)
  segq = jnp.pad(segment_ids_BT, [(0, 0), (0, pad)]).reshape(B, nq, C)
  k_idx = jnp.arange(T)

  @jax.checkpoint
  def block(args):
    qi, si, start = args                                      # [B, C, H, D], [B, C], scalar
    logits = matmul.einsum("bchd,bshd->bhcs", qi * jnp.asarray(scale, qi.dtype), k_BTHD)
    allowed = _segment_allowed(si, segment_ids_BT)           # [B, C, T]
    if causal:
      allowed &= k_idx[None, None, :] <= (start + jnp.arange(C))[None, :, None]
    logits = jnp.where(allowed[:, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v_BTHD.dtype)
    return matmul.einsum("bhcs,bshd->bchd", probs, v_BTHD).astype(v_BTHD.dtype)

  out = jax.lax.map(block, (jnp.moveaxis(q, 1, 0), jnp.moveaxis(segq, 1, 0), jnp.arange(nq) * C))
  return jnp.moveaxis(out, 0, 1).reshape(B, nq * C, H, D)[:, :T]


def cache_mask(start_B: jax.Array, num_new: int, cache_len: int, half_window: int | None = None) -> jax.Array:
  """[B, 1, T, S] mask for T new queries at cache rows start..start+T-1 attending a cache of S rows causally."""
  q_idx_BT = start_B[:, None] + jnp.arange(num_new)[None, :]
  j = jnp.arange(cache_len)
  allowed = j[None, None, :] <= q_idx_BT[:, :, None]
  if half_window is not None:
    allowed &= jnp.abs(q_idx_BT[:, :, None] - j[None, None, :]) <= half_window
  return allowed[:, None]


def _as_bits(x: jax.Array) -> jax.Array:
  """16-bit floats as uint16 (a bitcast). Cache writes are scatters (per-row offsets or slots), and XLA:CPU runs a
  bfloat16 scatter as float32: the whole cache converted there and back at every call (in the cached AS-ARM call at
  N = 256, 4 layers, it took longer than the call's products). An integer scatter of the same bits avoids the
  conversions; XLA:CPU still copies the cache at the bitcast (one 16-bit pass, 10-25% of such a call saved in all,
  BENCHMARKS.md), and accelerators, which scatter bfloat16 natively, are unaffected."""
  return jax.lax.bitcast_convert_type(x, jnp.uint16) if x.dtype.itemsize == 2 else x


def _from_bits(x: jax.Array, dtype: Any) -> jax.Array:
  return jax.lax.bitcast_convert_type(x, dtype) if x.dtype != dtype else x


def write_cache(cache_BSHD: jax.Array, new_BTHD: jax.Array, start_B: jax.Array) -> jax.Array:
  """Writes each row's new entries at its own offset (ragged batches)."""
  new_BTHD = _as_bits(new_BTHD.astype(cache_BSHD.dtype))
  out = jax.vmap(lambda c, n, s: jax.lax.dynamic_update_slice_in_dim(c, n, s, axis=0))(
      _as_bits(cache_BSHD), new_BTHD, start_B)
  return _from_bits(out, cache_BSHD.dtype)


def write_slots(mem: jax.Array, new_BTHD: jax.Array, slot_BT: jax.Array, slot_axis: int) -> jax.Array:
  """mem ([B, H, S, Dh] or [B, H, Dh, S]: `slot_axis` 2 or 3) with token t's entry at slot[b, t]; slots >= S are
  dropped (tokens not stored)."""
  rows_B1 = jnp.arange(mem.shape[0])[:, None]
  index = (rows_B1, slice(None), slot_BT) if slot_axis == 2 else (rows_B1, slice(None), slice(None), slot_BT)
  out = _as_bits(mem).at[index].set(_as_bits(new_BTHD.astype(mem.dtype)), mode="drop")
  return _from_bits(out, mem.dtype)


def memory_attention(q_BTHD: jax.Array, k_mem_BHDS: jax.Array, v_mem_BHSD: jax.Array, k_BTHD: jax.Array,
                     v_BTHD: jax.Array, mask_B1TS: jax.Array, self_BT: jax.Array, scale: float) -> jax.Array:
  """Attention over a memory under `mask_B1TS`, plus each token's own key where `self_BT` (a token whose entry is
  not in the memory); one softmax over both. The memory is laid out as the batched products read it (keys
  [B, H, Dh, S], values [B, H, S, Dh]), so a loop-carried cache is read in place, never copied or transposed."""
  q_BTHD = q_BTHD * jnp.asarray(scale, q_BTHD.dtype)
  dt = q_BTHD.dtype
  # canonical batched products [G, M, K] x [G, K, N] (other orders run on a slow Eigen path on CPU)
  mem_BHTS = matmul.einsum("bhtd,bhds->bhts", q_BTHD.transpose(0, 2, 1, 3), k_mem_BHDS.astype(dt))
  mem_BHTS = jnp.where(mask_B1TS, mem_BHTS, jnp.finfo(jnp.float32).min)
  self_BHT = jnp.einsum("bthd,bthd->bht", q_BTHD, k_BTHD, preferred_element_type=jnp.float32)
  self_BHT = jnp.where(self_BT[:, None], self_BHT, jnp.finfo(jnp.float32).min)
  top_BHT = jnp.maximum(mem_BHTS.max(axis=-1), self_BHT)
  e_mem_BHTS = jnp.exp(mem_BHTS - top_BHT[..., None])
  e_self_BHT = jnp.exp(self_BHT - top_BHT)
  norm_BHT = e_mem_BHTS.sum(axis=-1) + e_self_BHT
  out_BHTD = matmul.einsum("bhts,bhsd->bhtd", (e_mem_BHTS / norm_BHT[..., None]).astype(dt), v_mem_BHSD.astype(dt))
  out_BTHD = (out_BHTD.transpose(0, 2, 1, 3)
              + (e_self_BHT / norm_BHT).transpose(0, 2, 1)[..., None].astype(dt) * v_BTHD)
  return out_BTHD.astype(v_BTHD.dtype)


class SelfAttention(nn.Module):
  """Fused-QKV self-attention with optional RoPE. Wqkv: [embed, 3, heads, kv]; Wo: [heads, kv, embed].

  `implementation`: "auto" (on TPU: "splash" where the length is a multiple of 128; elsewhere sliding-window layers
  banded where that pays, `use_banded`, otherwise and in global layers "einsum"), "splash" (Pallas splash
  attention, models/layers/splash.py; cached decoding runs the dense kernel), "chunked" (banded and query-chunked: no length x length matrix anywhere, for long context), or
  a dense kernel of `dot_product_attention` ("einsum", "xla", "cudnn"; cuDNN takes 16-bit inputs only, so the
  configs refuse it with model.dtype=float32). `chunk_size`: queries per block of "chunked" global attention.
  Without a cache it attends within segments (packing/padding) with optional causal and window masks. With
  `kv_cache=(k_BSHD, v_BSHD, start_B)` it writes the new keys and values at rows start_B.. of the cache, attends
  the cache causally (decoding), and returns (output, (k, v)). With `memory=(k_BHDS, v_BHSD, slot_BT, self_BT)`
  (keys and values computed earlier, RoPE applied) it writes its own tokens' keys and values at slots `slot_BT` (a
  slot >= S: not stored), attends the memory under `mask_B1TT` ([B, 1, T, S]; a stored token reads itself through
  its slot) and, where `self_BT`, its own key; returns (output, (k_mem, v_mem)) with the writes (any-order caches).
  """
  num_heads: int
  head_dim: int
  rope_theta: float | None
  causal: bool = False
  half_window: int | None = None
  use_bias: bool = False
  implementation: str = "einsum"
  chunk_size: int = 512
  dtype: Any = jnp.float32
  qkv_init: Callable = nn.initializers.truncated_normal(0.02)
  out_init: Callable = nn.initializers.truncated_normal(0.02)
  dropout_rate: float = 0.0   # on the attention probabilities, when called with deterministic=False
  rope_within_row: bool = False   # positions are within-row indices (< T): RoPE from a [T, Dh] table (rope.py)

  @nn.compact
  def __call__(self, x_BTD: jax.Array, segment_ids_BT: jax.Array | None, positions_BT: jax.Array,
               kv_cache: tuple[jax.Array, jax.Array, jax.Array] | None = None, mask_B1TT: jax.Array | None = None,
               deterministic: bool = True, memory: tuple[jax.Array, ...] | None = None):
    """`mask_B1TT` (boolean, query i may read key j) replaces the segment/causal/window mask when given (models
    with their own visibility rules, e.g. any-order models); it runs the dense kernel. `deterministic=False` with
    dropout_rate > 0 drops attention probabilities (rng stream "dropout"; dense "einsum" kernel)."""
    D = x_BTD.shape[-1]
    qkv = Linear((3, self.num_heads, self.head_dim), ("embed", None, "heads", "kv"), use_bias=self.use_bias,
                 dtype=self.dtype, kernel_init=self.qkv_init, name="Wqkv")(x_BTD)  # [B, T, 3, H, Dh]
    q_BTHD, k_BTHD, v_BTHD = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if self.rope_theta is not None:
      table = x_BTD.shape[1] if self.rope_within_row and kv_cache is None and memory is None else None
      q_BTHD = apply_rope(q_BTHD, positions_BT, self.rope_theta, table)
      k_BTHD = apply_rope(k_BTHD, positions_BT, self.rope_theta, table)
    q_BTHD = nn.with_logical_constraint(q_BTHD, ("batch", "length", "heads", "kv"))
    scale = self.head_dim ** -0.5
    T = x_BTD.shape[1]
    dropout_on = self.dropout_rate > 0 and not deterministic
    if kv_cache is None and memory is None and (self.implementation == "splash" or (
        self.implementation == "auto" and not dropout_on and mask_B1TT is None and T % splash.LANES == 0
        and platform() == "tpu")):
      if mask_B1TT is not None:
        raise ValueError("model.attention_impl='splash' takes the segment, causal and window masks only, not a "
                         "model's own visibility mask (e.g. any-order models); choose 'einsum'")
      if dropout_on:
        raise ValueError("attention dropout runs in the 'einsum' kernel only; set model.attention_impl='einsum' "
                         "(now 'splash') or model.dropout_rate=0")
      out_BTHD = splash.splash_attention(q_BTHD, k_BTHD, v_BTHD, segment_ids_BT, scale, causal=self.causal,
                                         half_window=self.half_window)
      return self._output(out_BTHD, D)
    banded = self.half_window is not None and (self.implementation == "chunked" or (
        self.implementation == "auto" and use_banded(T, self.half_window)))
    if memory is not None:
      if mask_B1TT is None:
        raise ValueError("attention over a memory needs mask_B1TT over the memory slots")
      k_mem, v_mem, slot_BT, self_BT = memory
      k_mem, v_mem = write_slots(k_mem, k_BTHD, slot_BT, 3), write_slots(v_mem, v_BTHD, slot_BT, 2)
      out_BTHD = memory_attention(q_BTHD, k_mem, v_mem, k_BTHD, v_BTHD, mask_B1TT, self_BT, scale)
      return self._output(out_BTHD, D), (k_mem, v_mem)
    if kv_cache is None and mask_B1TT is None and (banded or self.implementation == "chunked"):   # no T x T scores
      if self.half_window is not None:
        out_BTHD = banded_attention(q_BTHD, k_BTHD, v_BTHD, segment_ids_BT, self.half_window, scale, self.causal)
      else:
        out_BTHD = chunked_attention(q_BTHD, k_BTHD, v_BTHD, segment_ids_BT, scale, self.causal, self.chunk_size)
      return self._output(out_BTHD, D)
    if kv_cache is None:
      mask = mask_B1TT if mask_B1TT is not None else attention_mask(segment_ids_BT, causal=self.causal,
                                                                    half_window=self.half_window)
      keys, values, new_cache = k_BTHD, v_BTHD, None
    else:
      k_cache, v_cache, start_B = kv_cache
      keys, values = write_cache(k_cache, k_BTHD, start_B), write_cache(v_cache, v_BTHD, start_B)
      mask = cache_mask(start_B, x_BTD.shape[1], k_cache.shape[1], self.half_window)
      new_cache = (keys, values)
    impl = "einsum" if self.implementation in ("auto", "chunked", "splash") else self.implementation
    dropout = None
    if self.dropout_rate > 0 and not deterministic:
      dropout = (self.dropout_rate, self.make_rng("dropout"))
    out_BTHD = dot_product_attention(q_BTHD, keys.astype(q_BTHD.dtype), values.astype(q_BTHD.dtype), mask,
                                     scale, impl, dropout)
    out = self._output(out_BTHD, D)
    return out if kv_cache is None else (out, new_cache)

  def _output(self, out_BTHD, D):
    out_BTHD = nn.with_logical_constraint(out_BTHD, ("batch", "length", "heads", "kv"))
    return Linear((D,), ("heads", "kv", "embed"), n_in=2, use_bias=self.use_bias, dtype=self.dtype,
                  kernel_init=self.out_init, name="Wo")(out_BTHD)
