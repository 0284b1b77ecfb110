"""Attention forward+backward time: our einsum path vs jax.nn.dot_product_attention (XLA), in one run.

  python -m bench.attention_impl [--batch=8 --seq=512 --heads=12 --head_dim=64]

Times the gradient of sum(attention(q, k, v)^2) w.r.t. q, k, v (median of 5 after one warm-up) for both
implementations in models/layers/attention.py, a global and a sliding-window mask, and prints the ratio.
"""
import statistics
import time

from absl import app, flags

_B = flags.DEFINE_integer("batch", 8, "Batch size.")
_T = flags.DEFINE_integer("seq", 512, "Sequence length.")
_H = flags.DEFINE_integer("heads", 12, "Heads.")
_D = flags.DEFINE_integer("head_dim", 64, "Head dimension.")


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from models.layers.attention import attention_mask, dot_product_attention
  B, T, H, D = _B.value, _T.value, _H.value, _D.value
  q, k, v = (jax.random.normal(r, (B, T, H, D)) for r in jax.random.split(jax.random.PRNGKey(0), 3))
  seg = jnp.ones((B, T), jnp.int32)
  print(f"batch {B}, seq {T}, heads {H}, head_dim {D}; device {jax.devices()[0].device_kind}")
  print("| mask | einsum (ms) | jax.nn.dot_product_attention xla (ms) | speed-up |\n|---|---|---|---|")
  for name, mask in (("global", attention_mask(seg)), ("window 64", attention_mask(seg, half_window=64))):
    times = {}
    for impl in ("einsum", "xla"):
      f = jax.jit(jax.grad(lambda q, k, v: jnp.sum(dot_product_attention(q, k, v, mask, D ** -0.5, impl) ** 2),
                           argnums=(0, 1, 2)))
      jax.block_until_ready(f(q, k, v))
      ts = []
      for _ in range(5):
        t = time.perf_counter()
        jax.block_until_ready(f(q, k, v))
        ts.append(time.perf_counter() - t)
      times[impl] = statistics.median(ts)
    print(f"| {name} | {1e3 * times['einsum']:.0f} | {1e3 * times['xla']:.0f} | "
          f"{times['xla'] / times['einsum']:.2f}x |")


if __name__ == "__main__":
  app.run(main)
