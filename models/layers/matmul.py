"""Matrix products that accumulate in float32 and keep 16-bit operands 16-bit in the backward pass too.

`einsum(spec, a, b)` returns float32. With float32 operands it is `jnp.einsum(..., preferred_element_type=float32)`.
With bfloat16 (or float16) operands of one dtype it is a custom VJP whose forward product and both backward
products take that dtype and accumulate in float32: JAX's own transpose of a float32-accumulating product would
multiply the float32 cotangent by the other operand upcast to float32, so the whole backward pass would silently
run at float32 speed (tests/models/test_mixed_precision.py checks every dot of the compiled train step). The cotangent
is rounded to the operands' dtype before its products, as in mixed-precision training elsewhere (MaxText,
PyTorch autocast).

Specs are two-operand einsums whose every operand index appears in the other operand or the output (true of
projections, attention scores and attention-weighted sums); "..." is allowed (the same broadcast axes wherever it
appears).

`contract_last` (every dense layer) takes the same custom VJP with float32 operands on CPU too. There XLA's own
transpose of a dense product writes the cotangent transposed so that each weight-gradient product contracts a
minor axis: layout copies were 32.6% of the default config's float32 train step (bench/profile_step.py). The
explicit [G, M, K] x [G, K, N] backward products made the trainer's whole float32 step faster, in-process
alternated A/B (measured when written, in the git history of BENCHMARKS.md): default config 1.09-1.52x,
ModernBERT-base 1.05-1.08x, causal LM 1.10x median, ELECTRA within noise. Attention products keep XLA's
autodiff in float32: through this VJP the base step ran 0.85-0.92x. Other platforms keep XLA's autodiff (their
layout assignment is not measured here); the platform is the one compiled for (models/layers/platform.py), so a TPU
topology compiled on CPU gets TPU's.
"""
import functools
import string

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from models.layers.platform import platform

# Every product's output carries this name, so that remat policies (models/layers/remat.py) can save or offload it
# whether it came from XLA's dot or from the custom VJP below (which a dot-matching policy cannot see into).
PRODUCTS = "products"


def einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  if a.dtype != b.dtype or a.dtype == jnp.float32 or not jnp.issubdtype(a.dtype, jnp.floating):
    out = jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
  else:
    out = _custom_product(_explicit(spec.replace(" ", ""), a.ndim, b.ndim))(a, b)
  return checkpoint_name(out, PRODUCTS)


def _explicit(spec: str, ndim_a: int, ndim_b: int) -> str:
  """Replaces "..." (lower-case specs) by upper-case letters for the broadcast axes."""
  if "..." not in spec:
    return spec
  operands, out = spec.split("->")
  sa, sb = operands.split(",")
  lead = max(ndim_a - len(sa.replace("...", "")) if "..." in sa else 0,
             ndim_b - len(sb.replace("...", "")) if "..." in sb else 0)
  return spec.replace("...", string.ascii_uppercase[:lead])


@functools.cache
def _custom_product(spec: str):
  """The product of `spec` in float32 whose two backward products take the operands' dtype (16-bit or float32)."""
  operands, out = spec.split("->")
  sa, sb = operands.split(",")
  grad_a, grad_b = f"{out},{sb}->{sa}", f"{sa},{out}->{sb}"

  @jax.custom_vjp
  def product(a, b):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)

  def forward(a, b):
    return product(a, b), (a, b)

  def backward(res, ct):
    a, b = res
    ct = ct.astype(a.dtype)
    with jax.named_scope("matmul_backward"):    # op_name .../matmul_backward in profiles (bench/profile_step.py)
      return _batched_matmul(grad_a, ct, b).astype(a.dtype), _batched_matmul(grad_b, a, ct).astype(b.dtype)

  product.defvjp(forward, backward)
  return product


def _batched_matmul(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """`jnp.einsum(spec, a, b)` in float32 as one [G, M, K] x [G, K, N] product on operands laid out that way.

  XLA:CPU runs 16-bit x 16-bit -> float32 dots only in that canonical form (elsewhere: "Unsupported element type
  for DotThunk"); a backward product contracts an axis that is minor in neither operand, and XLA would fold a
  plain transpose back into the dot (or swap its operands to absorb the output's), so the transposed operands and
the product pass optimisation barriers.
  """
  operands, out = spec.split("->")
  sa, sb = operands.split(",")
  batch = [c for c in sa if c in sb and c in out]
  contracted = [c for c in sa if c in sb and c not in out]
  free_a = [c for c in sa if c not in sb]
  free_b = [c for c in sb if c not in sa]
  size = {**dict(zip(sa, a.shape)), **dict(zip(sb, b.shape))}
  n = lambda cs: int(np.prod([size[c] for c in cs], dtype=np.int64))  # noqa: E731
  a3 = jnp.transpose(a, [sa.index(c) for c in batch + free_a + contracted]).reshape(n(batch), n(free_a), n(contracted))
  b3 = jnp.transpose(b, [sb.index(c) for c in batch + contracted + free_b]).reshape(n(batch), n(contracted), n(free_b))
  a3, b3 = jax.lax.optimization_barrier((a3, b3))
  y = jax.lax.optimization_barrier(
      jax.lax.dot_general(a3, b3, (((2,), (1,)), ((0,), (0,))), preferred_element_type=jnp.float32))
  order = batch + free_a + free_b
  y = y.reshape([size[c] for c in order])
  return jnp.transpose(y, [order.index(c) for c in out])


def contract_last(x: jax.Array, kernel: jax.Array, n_in: int) -> jax.Array:
  """x [..., *in] · kernel [*in, *out] -> [..., *out] in float32 (the dense layer's product)."""
  letters = iter(string.ascii_letters)
  lead = "".join(next(letters) for _ in range(x.ndim - n_in))
  contracted = "".join(next(letters) for _ in range(n_in))
  features = "".join(next(letters) for _ in range(kernel.ndim - n_in))
  spec = f"{lead}{contracted},{contracted}{features}->{lead}{features}"
  if x.dtype == kernel.dtype == jnp.float32 and platform() == "cpu":
    return checkpoint_name(_custom_product(spec)(x, kernel), PRODUCTS)
  return einsum(spec, x, kernel)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def add_bias(y: jax.Array, bias: jax.Array, dtype=jnp.float32) -> jax.Array:
  """y [..., *F] + bias [*F], whose bias gradient is a product (ones [N] · cotangent [N, F], operands in `dtype`,
  float32 accumulation, like every product here) rather than a reduction over the leading axes: XLA:CPU ran that
  reduction 28x slower than the product ([8, 512, 50368] -> [50368]: 875 ms vs 31 ms), 4% of the float32
  ModernBERT-base train step (bench/profile_step.py, BENCHMARKS.md). For vocabulary-sized biases only: with
  hidden-size biases the reduction is as fast and, fused in place, faster (ELECTRA's biased layers)."""
  return y + bias


def _add_bias_fwd(y, bias, dtype):
  return y + bias, bias


def _add_bias_bwd(dtype, bias, ct):
  ct2 = ct.reshape(-1, bias.size)
  if jnp.dtype(dtype) == jnp.float32:
    grad = jnp.dot(jnp.ones((ct2.shape[0],), dtype), ct2, precision=jax.lax.Precision.HIGHEST,
                   preferred_element_type=jnp.float32)
  else:   # two rows of ones: XLA:CPU runs a 16-bit product with one row (a gemv) on float32 operands
    grad = _batched_matmul("mn,nv->mv", jnp.ones((2, ct2.shape[0]), dtype), ct2.astype(dtype))[0]
  return ct, grad.reshape(bias.shape).astype(bias.dtype)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)
