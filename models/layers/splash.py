"""Pallas splash attention (TPU): block-sparse flash attention whose mask skips the blocks it never reads.

`model.attention_impl="splash"` (and "auto" on TPU) runs self-attention through
`jax.experimental.pallas.ops.tpu.splash_attention`: bidirectional (FullMask), causal (CausalMask) or a sliding
window (LocalMask; ModernBERT's local layers keep |i - j| <= half_window, i.e. window_size=(w, w), causal ones
(w, 0)), with packed documents through the kernel's segment ids. Segment id 0 (padding) is a segment of its own
there: a real token never reads a padding key, as in the dense kernels; padding queries read only padding (their
outputs differ from the dense kernels' and are ignored by every loss).

The kernel works on one device's [H, T, Dh] per example: inside a jitted step over a mesh it runs under
`jax.shard_map` with the batch over the mesh axes the logical rules give "batch" and heads over those of "heads",
and vmapped over the local batch. Off TPU it runs in Pallas interpret mode (slow, exact: for tests).
Legend: B batch, T length, H heads, D head dim.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib
from jax.sharding import PartitionSpec as P

from models.layers.platform import platform

LANES = 128            # the kernel's block sizes are multiples of this (segment ids need it)
DEFAULT_BLOCK = 512    # block_q = block_kv on TPU (MaxText's default; see default_block)


def check_length(seq_len: int) -> None:
  if seq_len % LANES:
    raise ValueError(f"model.attention_impl='splash' needs a length that is a multiple of {LANES} (now {seq_len}); "
                     f"set --config.data.seq_len to a multiple of {LANES} or choose another model.attention_impl")


def default_block(seq_len: int, half_window: int | None = None) -> int:
  """block_q = block_kv: 512 (MaxText's default), or for a window the multiple of 128 nearest above 2w (a +-64
  window in 512-blocks would compute 1,536 keys per query, in 128-blocks 384); never more than divides T."""
  block = DEFAULT_BLOCK if half_window is None else min(DEFAULT_BLOCK, LANES * -(-2 * half_window // LANES))
  return math.gcd(seq_len, max(block, LANES))


def executed_keys(seq_len: int, causal: bool, half_window: int | None, block: int | None = None) -> float:
  """Keys per query the kernel computes (it skips fully masked blocks and computes partial ones whole), for a FLOP
  model of what runs: e.g. a window of +-64 at T = 8192 in blocks of 512 reads 2 or 3 key blocks per query block."""
  block = block or default_block(seq_len, half_window)
  n = -(-seq_len // block)
  touched = 0
  for i in range(n):
    q_lo, q_hi = i * block, min(seq_len, (i + 1) * block) - 1
    lo = 0 if half_window is None else max(0, q_lo - half_window)
    hi = seq_len - 1 if half_window is None else min(seq_len - 1, q_hi + (0 if causal else half_window))
    if causal:
      hi = min(hi, q_hi)
    touched += hi // block - lo // block + 1
  return touched * block / n


def make_mask(seq_len: int, causal: bool, half_window: int | None) -> mask_lib.Mask:
  """The kernel's static mask for one head: full, causal, or a window (|i - j| <= w; causal: 0 <= i - j <= w)."""
  shape = (seq_len, seq_len)
  if half_window is not None:
    return mask_lib.LocalMask(shape, window_size=(half_window, 0 if causal else half_window), offset=0)
  return mask_lib.CausalMask(shape) if causal else mask_lib.FullMask(shape)


def splash_attention(q_BTHD: jax.Array, k_BTHD: jax.Array, v_BTHD: jax.Array, segment_ids_BT: jax.Array,
                     scale: float, *, causal: bool = False, half_window: int | None = None,
                     block: int | None = None, interpret: bool | None = None) -> jax.Array:
  """softmax(q k^T · scale, masked) v by the splash kernel; [B, T, H, D] in and out. `block`: block_q = block_kv
  (default_block); `interpret`: Pallas interpret mode (default: off TPU)."""
  B, T, H, D = q_BTHD.shape
  check_length(T)
  block = block or default_block(T, half_window)
  interpret = platform() != "tpu" if interpret is None else interpret
  mesh = jax.sharding.get_abstract_mesh()
  sharded = mesh is not None and not mesh.empty and mesh.size > 1
  batch_axes, head_axes = nn.logical_to_mesh_axes(("batch", "heads")) if sharded else (None, None)
  head_shards = math.prod(mesh.shape[a] for a in _names(head_axes)) if sharded else 1
  if H % head_shards:
    raise ValueError(f"splash attention shards {H} heads over {head_shards} devices (mesh axes {head_axes}); set "
                     "model.num_heads to a multiple of the tensor-parallel size")
  sizes = kernel_lib.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                                block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
  one_head = make_mask(T, causal, half_window)
  kernel = kernel_lib.make_splash_mha(mask_lib.MultiHeadMask([one_head] * (H // head_shards)), head_shards=1,
                                      q_seq_shards=1, block_sizes=sizes, interpret=interpret)

  def attend(q_bthd, k_bthd, v_bthd, seg_bt):
    to_heads = lambda x: x.transpose(0, 2, 1, 3)  # noqa: E731 - [b, T, h, D] -> [b, h, T, D]
    out = jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=kernel_lib.SegmentIds(q=s, kv=s)))(
        to_heads(q_bthd * jnp.asarray(scale, q_bthd.dtype)), to_heads(k_bthd), to_heads(v_bthd), seg_bt)
    return to_heads(out)

  if not sharded:
    return attend(q_BTHD, k_BTHD, v_BTHD, segment_ids_BT)
  spec = P(batch_axes, None, head_axes, None)
  return jax.shard_map(attend, in_specs=(spec, spec, spec, P(batch_axes, None)), out_specs=spec,
                       check_vma=False)(q_BTHD, k_BTHD, v_BTHD, segment_ids_BT)


def _names(axes) -> tuple[str, ...]:
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)
