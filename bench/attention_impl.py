"""Attention forward+backward time: dense einsum, banded, and jax.nn.dot_product_attention (XLA), in one run.

  python -m bench.attention_impl [--batch=8 --seq=512 --heads=12 --head_dim=64 --half_windows=64 --dtype=float32]

Times the gradient of sum(attention(q, k, v)^2) w.r.t. q, k, v (median of --repeats after one warm-up, the kernels
interleaved round by round) for the kernels of models/layers/attention.py: a global mask (einsum, xla) and, per
half window w of --half_windows, a sliding-window mask |i - j| <= w (einsum and xla on the dense masked scores,
and the banded kernel, which never builds the T x T matrix). "auto" (the models' default) picks the banded kernel
for a sliding-window layer only where it pays (`use_banded`); the last column says which kernel that is.
"""
import statistics
import time

from absl import app, flags

from bench import record

_B = flags.DEFINE_integer("batch", 8, "Batch size.")
_T = flags.DEFINE_integer("seq", 512, "Sequence length.")
_H = flags.DEFINE_integer("heads", 12, "Heads.")
_D = flags.DEFINE_integer("head_dim", 64, "Head dimension.")
_W = flags.DEFINE_list("half_windows", ["64"], "Half windows w of the sliding-window masks (|i - j| <= w).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "q, k, v dtype.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds.")
_EXTRA = flags.DEFINE_list("extra", [], "Accelerator kernels to add: cudnn (NVIDIA, 16-bit), splash (TPU; Pallas "
                           "interpret mode elsewhere, slow). A kernel the device refuses is reported, not fatal.")


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp

  from models.layers.attention import attention_mask, banded_attention, dot_product_attention, use_banded
  from models.layers.splash import splash_attention
  B, T, H, D = _B.value, _T.value, _H.value, _D.value
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  q, k, v = (jax.random.normal(r, (B, T, H, D)).astype(_DTYPE.value) for r in keys)
  seg = jnp.ones((B, T), jnp.int32)
  scale = D ** -0.5

  def grad(attn):
    return jax.jit(jax.grad(lambda q, k, v: jnp.sum(attn(q, k, v).astype(jnp.float32) ** 2), argnums=(0, 1, 2)))

  cases = {("global", impl): grad(lambda q, k, v, impl=impl: dot_product_attention(q, k, v, attention_mask(seg),
                                                                                  scale, impl))
           for impl in ("einsum", "xla")}
  for w in map(int, _W.value):
    mask = attention_mask(seg, half_window=w)
    for impl in ("einsum", "xla"):
      cases[(w, impl)] = grad(lambda q, k, v, impl=impl, mask=mask: dot_product_attention(q, k, v, mask, scale, impl))
    cases[(w, "banded")] = grad(lambda q, k, v, w=w: banded_attention(q, k, v, seg, w, scale))
  for impl in _EXTRA.value:
    for w in [None, *map(int, _W.value)]:
      if impl == "cudnn":
        mask = attention_mask(seg, half_window=w)
        f = lambda q, k, v, mask=mask: dot_product_attention(q, k, v, mask, scale, "cudnn")  # noqa: E731
      elif impl == "splash":
        f = lambda q, k, v, w=w: splash_attention(q, k, v, seg, scale, half_window=w)  # noqa: E731
      else:
        raise SystemExit(f"--extra={impl}: use cudnn or splash")
      cases[("global" if w is None else w, impl)] = grad(f)
  refused = {}
  for key, f in list(cases.items()):
    try:
      jax.block_until_ready(f(q, k, v))
    except Exception as e:  # noqa: BLE001 - a kernel this device or shape does not support
      refused[key] = " ".join(str(e).split())[:120]
      del cases[key]
  times = {key: [] for key in cases}
  for _ in range(_REPEATS.value):
    for key, f in cases.items():
      t = time.perf_counter()
      jax.block_until_ready(f(q, k, v))
      times[key].append(time.perf_counter() - t)
  ms = {key: 1e3 * statistics.median(ts) for key, ts in times.items()}
  print(f"batch {B}, seq {T}, heads {H}, head_dim {D}, {_DTYPE.value}; device {jax.devices()[0].device_kind}")
  print("| mask | einsum (ms) | xla (ms) | banded (ms) | einsum / banded time | auto runs |\n|---|---|---|---|---|---|")
  print(f"| global | {ms[('global', 'einsum')]:.1f} | {ms[('global', 'xla')]:.1f} | | | einsum |")
  for w in map(int, _W.value):
    e, x, b = ms[(w, "einsum")], ms[(w, "xla")], ms[(w, "banded")]
    print(f"| window {w} | {e:.1f} | {x:.1f} | {b:.1f} | {e / b:.2f} | {'banded' if use_banded(T, w) else 'einsum'} |")
  for impl in _EXTRA.value:
    for w in ["global", *map(int, _W.value)]:
      key = (w, impl)
      shown = f"{ms[key]:.1f} ms, einsum / {impl} time {ms[(w, 'einsum')] / ms[key]:.2f}" if key in ms else \
          f"refused: {refused.get(key)}"
      print(f"{impl}, {'window ' + str(w) if w != 'global' else 'global'}: {shown}")
  w = int(_W.value[0])
  auto = "banded" if use_banded(T, w) else "einsum"
  what = f"attention gradient, {B} x {T} x {H} heads of {D}, {_DTYPE.value}, window {w}"
  pairs = [(f"{what}: auto's kernel, {auto}", auto, "xla", "jax.nn.dot_product_attention, xla"),
           (f"{what}: banded", "banded", "einsum", "dense masked einsum")]
  pairs += [(f"{what}: {impl}", impl, "einsum", "dense masked einsum") for impl in _EXTRA.value]
  record.write("attention_impl", {"batch": B, "seq": T, "heads": H, "head_dim": D, "dtype": _DTYPE.value,
                                  "device": jax.devices()[0].device_kind,
                                  "ms": {f"{key[0]}/{key[1]}": v for key, v in ms.items()},
                                  "refused": {f"{key[0]}/{key[1]}": v for key, v in refused.items()}},
               headline=[record.row(label, ms[(w, ours)], ms[(w, ref)], "ms", higher_is_better=False,
                                    reference_name=name)
                         for label, ours, ref, name in pairs[:3] if (w, ours) in ms and (w, ref) in ms])


if __name__ == "__main__":
  app.run(main)
