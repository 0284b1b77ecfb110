"""ModernBERT-base: our Flax model against Hugging Face's PyTorch ModernBertForMaskedLM on the same machine.

  python -m bench.modernbert_vs_hf [--batch=8 --seq=512 --long=8192 --repeats=3]

Same config (ModernBERT-base shape, vocab 50,368, float32), same weights (HF's random init, converted with
models.hf.load_modernbert). Measures, in one run:
  - forward tokens/s (inference: torch.inference_mode vs a jitted apply),
  - training-step tokens/s (masked-LM loss at 30% masking, backward and AdamW update on both sides),
  - peak memory of one forward at --long tokens (batch 1): each side in its own subprocess, peak RSS (VmHWM)
    minus the RSS before the forward; ours uses attention_impl="chunked" (banded local, chunked global layers).
Timings are medians of --repeats after one warm-up; our compile time is excluded and reported separately. Each
side runs in its own subprocess, one after the other (both training states at once exceed 24 GiB).
Needs requirements-test.txt (torch, transformers).
"""
import json
import os
import subprocess
import sys
import time

from absl import app, flags

from bench.timing import median_seconds

_BATCH = flags.DEFINE_integer("batch", 8, "Batch size for throughput.")
_SEQ = flags.DEFINE_integer("seq", 512, "Sequence length for throughput.")
_LONG = flags.DEFINE_integer("long", 8192, "Sequence length for the peak-memory forward (batch 1).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats.")
_MEMORY_CHILD = flags.DEFINE_string("memory_child", "", "internal: 'ours' or 'hf' (run one memory measurement).")


def _rss_kib(field: str) -> int:
  for line in open("/proc/self/status"):
    if line.startswith(field):
      return int(line.split()[1])
  return 0


def _hf_model(path=None):
  import torch
  import transformers
  torch.manual_seed(0)
  if path:
    return transformers.ModernBertForMaskedLM.from_pretrained(path).eval()
  cfg = transformers.ModernBertConfig(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
  return transformers.ModernBertForMaskedLM(cfg).eval()


def memory_child(which: str, path: str, T: int) -> dict:
  import numpy as np
  ids = np.random.default_rng(0).integers(5, 50000, (1, T))
  if which == "hf":
    import torch
    model = _hf_model(path)
    x = torch.tensor(ids)
    before = _rss_kib("VmRSS")
    with torch.inference_mode():
      model(input_ids=x).logits.sum().item()
  else:
    import dataclasses

    import jax
    import jax.numpy as jnp

    from models.hf import load_modernbert
    from models.modernbert import ModernBertForMaskedLM
    model, params = load_modernbert(path)
    model = ModernBertForMaskedLM(dataclasses.replace(model.cfg, attention_impl="chunked"))
    params = jax.device_put(params)
    f = jax.jit(lambda p, x: model.apply({"params": p}, x))
    compiled = f.lower(params, jnp.asarray(ids)).compile()
    before = _rss_kib("VmRSS")
    jax.block_until_ready(compiled(params, jnp.asarray(ids)))
  return {"peak_increase_mib": (_rss_kib("VmHWM") - before) / 1024}


def throughput_child(which: str, path: str, B: int, S: int, repeats: int) -> dict:
  """Forward and training-step tokens/s of one side (each side runs alone: both at once exceed 24 GiB)."""
  import numpy as np
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 50000, (B, S))
  selected = rng.random((B, S)) < 0.3

  def timed(fn):
    return median_seconds(fn, repeats, warmup=1)

  out = {}
  if which == "hf":
    import torch
    hf = _hf_model(path)
    x_t, y_t = torch.tensor(ids), torch.tensor(np.where(selected, ids, -100))

    def fwd():
      with torch.inference_mode():
        hf(input_ids=x_t).logits.sum().item()

    out["forward"] = B * S / timed(fwd)
    hf.train()
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)

    def train():
      opt.zero_grad(set_to_none=True)
      hf(input_ids=x_t, labels=y_t).loss.backward()
      opt.step()

    out["train"] = B * S / timed(train)
    return out
  import jax
  import jax.numpy as jnp
  import optax

  from models.hf import load_modernbert
  from models.losses import cross_entropy_with_accuracy
  model, params = load_modernbert(path)
  params = jax.device_put(params)
  x = jnp.asarray(ids)
  f = jax.jit(lambda p, x: model.apply({"params": p}, x))
  t = time.perf_counter()
  jax.block_until_ready(f(params, x))
  out["compile_forward_s"] = time.perf_counter() - t
  out["forward"] = B * S / timed(lambda: jax.block_until_ready(f(params, x)))
  tx = optax.adamw(1e-4)
  w = jnp.asarray(selected, jnp.float32) / selected.sum()

  @jax.jit
  def step(p, o, x):
    def loss_fn(p):
      nll, _ = cross_entropy_with_accuracy(model.apply({"params": p}, x), x)
      return jnp.sum(nll * w)
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  state = [params, tx.init(params)]
  t = time.perf_counter()
  step.lower(*state, x).compile()
  out["compile_train_s"] = time.perf_counter() - t

  def train():
    p, o, loss = step(state[0], state[1], x)
    jax.block_until_ready(loss)
    state[0], state[1] = p, o

  out["train"] = B * S / timed(train)
  return out


def _child(arg: str, extra: list[str]) -> dict:
  out = subprocess.run([sys.executable, "-m", "bench.modernbert_vs_hf", *extra, arg], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
  if not lines:
    print(out.stderr[-3000:], file=sys.stderr)
    return {}
  return json.loads(lines[-1])


_THROUGHPUT_CHILD = flags.DEFINE_string("throughput_child", "", "internal: 'ours:PATH' or 'hf:PATH'.")


def main(argv):
  del argv
  import tempfile
  if _MEMORY_CHILD.value:
    which, path = _MEMORY_CHILD.value.split(":", 1)
    print(json.dumps(memory_child(which, path, _LONG.value)))
    return
  if _THROUGHPUT_CHILD.value:
    which, path = _THROUGHPUT_CHILD.value.split(":", 1)
    print(json.dumps(throughput_child(which, path, _BATCH.value, _SEQ.value, _REPEATS.value)))
    return
  import torch
  B, S = _BATCH.value, _SEQ.value
  t = time.perf_counter()
  hf = _hf_model()
  build_s = time.perf_counter() - t
  path = tempfile.mkdtemp()
  hf.save_pretrained(path)
  del hf
  extra = [f"--batch={B}", f"--seq={S}", f"--repeats={_REPEATS.value}", f"--long={_LONG.value}"]
  thr = {w: _child(f"--throughput_child={w}:{path}", extra) for w in ("ours", "hf")}
  mem = {w: _child(f"--memory_child={w}:{path}", extra).get("peak_increase_mib", float("nan")) for w in ("ours", "hf")}
  import jax
  print(f"ModernBERT-base shape (149.7M), float32, batch {B} x {S}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), jax {jax.__version__}, {os.cpu_count()} cores; HF model build "
        f"{build_s:.0f}s; our compile: forward {thr['ours'].get('compile_forward_s', 0):.1f}s, train step "
        f"{thr['ours'].get('compile_train_s', 0):.1f}s")
  print("| measurement | ours | HF PyTorch | ratio (ours / HF) |\n|---|---|---|---|")
  for key, name in (("forward", "forward"), ("train", "train step")):
    o, h = thr["ours"].get(key, float("nan")), thr["hf"].get(key, float("nan"))
    print(f"| {name} tokens/s | {o:,.0f} | {h:,.0f} | {o / h:.2f} |")
  print(f"| peak memory increase, {_LONG.value}-token forward (MiB) | {mem['ours']:,.0f} | {mem['hf']:,.0f} | "
        f"{mem['ours'] / mem['hf']:.2f} |")


if __name__ == "__main__":
  app.run(main)
