"""ModernBERT-base: our Flax model against Hugging Face's PyTorch ModernBertForMaskedLM on the same machine.

  python -m bench.modernbert_vs_hf [--batch=8 --seq=512 --long=8192 --repeats=3]

Same config (ModernBERT-base shape, vocab 50,368, float32), same weights (HF's random init, converted with
models.hf.load_modernbert). Measures, in one run:
  - forward tokens/s (inference: torch.inference_mode vs a jitted apply),
  - training-step tokens/s (masked-LM loss at 30% masking, backward and AdamW update on both sides),
  - peak memory of one forward at --long tokens (batch 1): each side in its own subprocess, peak RSS (VmHWM)
    minus the RSS before the forward; ours uses attention_impl="chunked" (banded local, chunked global layers).
Timings are medians of --repeats after one warm-up; our compile time is excluded and reported separately.
Needs requirements-test.txt (torch, transformers).
"""
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

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


def main(argv):
  del argv
  import tempfile
  if _MEMORY_CHILD.value:
    which, path = _MEMORY_CHILD.value.split(":", 1)
    print(json.dumps(memory_child(which, path, _LONG.value)))
    return
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  import torch

  from models.hf import load_modernbert
  from models.losses import cross_entropy_with_accuracy
  B, S = _BATCH.value, _SEQ.value
  t = time.perf_counter()
  hf = _hf_model()
  build_s = time.perf_counter() - t
  path = tempfile.mkdtemp()
  hf.save_pretrained(path)
  model, params = load_modernbert(path)
  params = jax.device_put(params)
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 50000, (B, S))
  selected = rng.random((B, S)) < 0.3
  labels = np.where(selected, ids, -100)

  # Forward.
  fwd = jax.jit(lambda p, x: model.apply({"params": p}, x))
  t = time.perf_counter()
  jax.block_until_ready(fwd(params, jnp.asarray(ids)))
  fwd_compile = time.perf_counter() - t
  x_t = torch.tensor(ids)

  def ours_fwd():
    jax.block_until_ready(fwd(params, jnp.asarray(ids)))

  def hf_fwd():
    with torch.inference_mode():
      hf(input_ids=x_t).logits.sum().item()

  # Training step: masked-LM loss on the selected positions, AdamW.
  tx = optax.adamw(1e-4)
  opt = tx.init(params)
  w = jnp.asarray(selected, jnp.float32) / selected.sum()

  def loss_fn(p, x):
    nll, _ = cross_entropy_with_accuracy(model.apply({"params": p}, x), x)
    return jnp.sum(nll * w)

  @jax.jit
  def step(p, o, x):
    loss, g = jax.value_and_grad(loss_fn)(p, x)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  t = time.perf_counter()
  state = [params, opt]
  p2, o2, loss = step(state[0], state[1], jnp.asarray(ids))
  jax.block_until_ready(loss)
  train_compile = time.perf_counter() - t
  state = [p2, o2]

  def ours_train():
    p, o, loss = step(state[0], state[1], jnp.asarray(ids))
    jax.block_until_ready(loss)
    state[0], state[1] = p, o

  hf.train()
  torch_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
  y_t = torch.tensor(labels)

  def hf_train():
    torch_opt.zero_grad(set_to_none=True)
    out = hf(input_ids=x_t, labels=y_t)
    out.loss.backward()
    torch_opt.step()

  def timed(fn):
    fn()
    ts = []
    for _ in range(_REPEATS.value):
      t = time.perf_counter()
      fn()
      ts.append(time.perf_counter() - t)
    return statistics.median(ts)

  results = {}
  for name, ours, theirs in (("forward", ours_fwd, hf_fwd), ("train step", ours_train, hf_train)):
    t_ours, t_hf = timed(ours), timed(theirs)
    results[name] = (B * S / t_ours, B * S / t_hf)
  hf.eval()

  mem = {}
  for which in ("ours", "hf"):
    out = subprocess.run([sys.executable, "-m", "bench.modernbert_vs_hf", f"--memory_child={which}:{path}",
                          f"--long={_LONG.value}"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    mem[which] = json.loads(lines[-1])["peak_increase_mib"] if lines else float("nan")
    if not lines:
      print(out.stderr[-2000:], file=sys.stderr)

  print(f"ModernBERT-base shape (149.7M), float32, batch {B} x {S}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), jax {jax.__version__}, {os.cpu_count()} cores; "
        f"HF model build {build_s:.0f}s; our compile: forward {fwd_compile:.1f}s, train step {train_compile:.1f}s")
  print("| measurement | ours | HF PyTorch | ratio (ours / HF) |\n|---|---|---|---|")
  for name, (o, h) in results.items():
    print(f"| {name} tokens/s | {o:,.0f} | {h:,.0f} | {o / h:.2f} |")
  print(f"| peak memory increase, {_LONG.value}-token forward (MiB) | {mem['ours']:,.0f} | {mem['hf']:,.0f} | "
        f"{mem['ours'] / mem['hf']:.2f} |")


if __name__ == "__main__":
  app.run(main)
