"""ModernBERT: our Flax model against Hugging Face's PyTorch ModernBertForMaskedLM on the same machine.

  python -m bench.modernbert_vs_hf [--config=base --batch=8 --seq=512 --long=8192 --repeats=3]
      [--dtype=float32,bfloat16] [--nomemory]
  python -m bench.modernbert_vs_hf --config=default --dtype=float32,bfloat16 --nomemory

Same config (--config=base: configs/modernbert_mlm.py:base, the ModernBERT-base shape, vocab 50,368; default:
configs/modernbert_mlm.py, the quick start's 3.3M-parameter model, vocab 4,096, batch 16 x 128), same weights
(HF's random init, converted with models.hf.load_modernbert). --batch / --seq default to the config's own
train.batch_size / data.seq_len. Measures, in one run:
  - forward tokens/s (inference: torch.inference_mode vs a jitted apply),
  - training-step tokens/s: ours is the trainer's own ahead-of-time compiled step (train.experiment.Experiment for
    configs/modernbert_mlm.py:base: masking at objective.mask_rate 0.3 inside the step, loss, gradient, global-norm
    clipping at optim.clip_norm, AdamW with the config's betas, eps, weight-decay mask and schedule), started from
    the converted weights; HF does the same work as a user writes it (30% masked labels, loss, backward,
    clip_grad_norm_, torch AdamW with the same hyperparameters), once with transformers' default (the MLM head at
    every position) and once with its `sparse_prediction=True` (the head at the labelled positions only: the same
    algorithm as our objective.sparse_head, the trainer's default; --nosparse_head runs ours dense),
  - peak memory of one forward at --long tokens (batch 1), with the vocabulary head (the MLM logits) and without
    it (the encoder's last hidden state: at 50k vocabulary the [T, V] float32 logits dominate both sides): each
    side in its own subprocess, peak RSS (VmHWM) minus the RSS before the forward; ours uses
    attention_impl="chunked" (banded local, chunked global layers).
--dtype: the compute dtypes measured. bfloat16: ours is `model.dtype=bfloat16` (float32 parameters, optimiser,
softmax, logits and loss; bf16 matmul operands with float32 accumulation, forward and backward); HF runs the same
work under `torch.autocast(device_type="cpu", dtype=torch.bfloat16)` (float32 parameters and optimiser). With
several dtypes the table adds each side's speed-up over its own float32. Memory is measured in float32 only.
Timings are medians of --repeats after one warm-up; our compile time is excluded and reported separately. Each
side runs in its own subprocess, one after the other (both training states at once exceed 24 GiB), or, with
--rounds=N, both sides in one process alternated over N rounds (this shared machine's speed drifts by up to 2x
between minutes, so only per-round ratios are comparable; fits in memory at the default config):
  python -m bench.modernbert_vs_hf --config=default --dtype=float32,bfloat16 --nomemory --rounds=5 --repeats=5
Needs requirements-test.txt (torch, transformers).
"""
import json
import os
import subprocess
import sys
import time

from absl import app, flags

from bench import record
from bench.timing import median_seconds

_CONFIG = flags.DEFINE_enum("config", "base", ["base", "default"],
                            "configs/modernbert_mlm.py shape: base (ModernBERT-base) or default (the quick start's).")
_BATCH = flags.DEFINE_integer("batch", 0, "Batch size for throughput (0: the config's train.batch_size).")
_SEQ = flags.DEFINE_integer("seq", 0, "Sequence length for throughput (0: the config's data.seq_len).")
_LONG = flags.DEFINE_integer("long", 8192, "Sequence length for the peak-memory forward (batch 1).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats.")
_DTYPE = flags.DEFINE_list("dtype", ["float32"], "Compute dtypes: float32, bfloat16 (HF: torch.autocast).")
_ROUNDS = flags.DEFINE_integer(
    "rounds", 0, "0: each side alone in its own subprocess, one after the other. N > 0: both sides in this process, "
    "alternated over N rounds of --repeats (per-round ratios; needs both models in memory: the default config).")
_SPARSE = flags.DEFINE_boolean(
    "sparse_head", True, "Our objective.sparse_head (the trainer's default: the MLM head at the masked positions).")
_MEMORY = flags.DEFINE_boolean("memory", True, "Also measure the peak memory of a --long forward (float32).")
_MEMORY_CHILD = flags.DEFINE_string("memory_child", "", "internal: 'ours' or 'hf' (run one memory measurement).")
_MEMORY_HEAD = flags.DEFINE_boolean("memory_head", True, "internal: measure the forward with the vocabulary head.")


def _rss_kib(field: str) -> int:
  for line in open("/proc/self/status"):
    if line.startswith(field):
      return int(line.split()[1])
  return 0


def _hf_model(path=None, sparse_prediction=False):
  """Loads the saved model, or builds one at random init with the trainer config's shape (its HF config.json).
  sparse_prediction: transformers' option to run the MLM head on the labelled positions only (as our objective's
  sparse head, the default of objective.sparse_head)."""
  import torch
  import transformers

  from models.hf.modernbert import hf_config_dict
  from models.modernbert.config import ModernBertConfig
  torch.manual_seed(0)
  if path:
    return transformers.ModernBertForMaskedLM.from_pretrained(path, sparse_prediction=sparse_prediction).eval()
  c = _trainer_config()
  ours = ModernBertConfig.from_config(c.model, c.model.vocab_size)
  cfg = transformers.ModernBertConfig(**{k: v for k, v in hf_config_dict(ours).items() if k != "architectures"})
  return transformers.ModernBertForMaskedLM(cfg).eval()


def _ids(rng, shape):
  """Random token ids of the trainer config's vocabulary (clear of the special ids 0-4)."""
  return rng.integers(5, _trainer_config().model.vocab_size, shape)


def memory_child(which: str, path: str, T: int, head: bool) -> dict:
  import numpy as np
  ids = _ids(np.random.default_rng(0), (1, T))
  if which == "hf":
    import torch
    model = _hf_model(path)
    x = torch.tensor(ids)
    before = _rss_kib("VmRSS")
    with torch.inference_mode():
      if head:
        model(input_ids=x).logits.sum().item()
      else:
        model.model(input_ids=x).last_hidden_state.sum().item()
  else:
    import dataclasses

    import jax
    import jax.numpy as jnp

    from models.hf import load_modernbert
    from models.modernbert import ModernBertForMaskedLM
    from models.modernbert.model import ModernBertEncoder
    model, params = load_modernbert(path)
    cfg = dataclasses.replace(model.cfg, attention_impl="chunked")
    params = jax.device_put(params)
    if head:
      f = jax.jit(lambda p, x: ModernBertForMaskedLM(cfg).apply({"params": p}, x))
    else:
      f = jax.jit(lambda p, x: ModernBertEncoder(cfg).apply({"params": p["model"]}, x))
    compiled = f.lower(params, jnp.asarray(ids)).compile()
    before = _rss_kib("VmRSS")
    jax.block_until_ready(compiled(params, jnp.asarray(ids)))
  return {"peak_increase_mib": (_rss_kib("VmHWM") - before) / 1024}


def throughput_child(which: str, path: str, B: int, S: int, repeats: int, dtype: str = "float32") -> dict:
  """Forward and training-step tokens/s of one side (each side runs alone: both at once exceed 24 GiB)."""
  fns, out = _side(which, path, B, S, dtype)
  for key, fn in fns.items():
    out[key] = B * S / median_seconds(fn, repeats, warmup=1)
  return out


def _side(which: str, path: str, B: int, S: int, dtype: str) -> tuple[dict, dict]:
  """One side's blocking {"forward": fn, "train": fn} at batch B x S in `dtype`, and its compile times (ours)."""
  import contextlib

  import numpy as np
  rng = np.random.default_rng(0)
  ids = _ids(rng, (B, S))
  selected = rng.random((B, S)) < 0.3
  out = {}
  if which in ("hf", "hf_sparse"):
    import torch
    hf = _hf_model(path, sparse_prediction=which == "hf_sparse")
    x_t, y_t = torch.tensor(ids), torch.tensor(np.where(selected, ids, -100))
    autocast = (lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16)) if dtype == "bfloat16" else (
        contextlib.nullcontext)

    def fwd():
      hf.eval()
      with torch.inference_mode(), autocast():
        hf(input_ids=x_t).logits.float().sum().item()

    o = _trainer_config().optim
    opt = torch.optim.AdamW(hf.parameters(), lr=o.lr, betas=(o.b1, o.b2), eps=o.eps, weight_decay=o.weight_decay)

    def train():
      hf.train()
      opt.zero_grad(set_to_none=True)
      with autocast():
        loss = hf(input_ids=x_t, labels=y_t).loss
      loss.backward()
      torch.nn.utils.clip_grad_norm_(hf.parameters(), o.clip_norm)
      opt.step()

    return ({"train": train} if which == "hf_sparse" else {"forward": fwd, "train": train}), out
  import dataclasses

  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from models.hf import load_modernbert
  from models.modernbert import ModernBertForMaskedLM
  from train.experiment import build_experiment
  model, params = load_modernbert(path)
  model = ModernBertForMaskedLM(dataclasses.replace(model.cfg, dtype=dtype))
  params = jax.device_put(params)
  x = jnp.asarray(ids)
  f = jax.jit(lambda p, x: model.apply({"params": p}, x))
  t = time.perf_counter()
  jax.block_until_ready(f(params, x))
  out["compile_forward_s"] = time.perf_counter() - t
  # The trainer's own step: the Experiment users run, its ahead-of-time compiled step, from the converted weights.
  c = _trainer_config()
  c.unlock()
  c.train.batch_size, c.data.seq_len, c.model.dtype = B, S, dtype
  c.objective.sparse_head = _SPARSE.value
  exp = build_experiment(c, devices=jax.devices()[:1])
  batch = {"tokens": ids.astype(np.int32), "segment_ids": np.ones((B, S), np.int32),
           "positions": np.broadcast_to(np.arange(S, dtype=np.int32), (B, S)).copy()}
  with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
    state = exp.init_state()
    if jax.tree.structure(state.params) != jax.tree.structure(params):
      raise SystemExit(f"the converted HF parameters do not match configs/modernbert_mlm.py ({_CONFIG.value})")
    # A copy: the step donates its state, and the forward above keeps reading `params`.
    state = state.replace(params=jax.device_put(jax.tree.map(jnp.copy, params), exp.state_sharding.params))
    t = time.perf_counter()
    step = exp.compiled_train_step()
    out["compile_train_s"] = time.perf_counter() - t
    b = exp.to_device(batch)
  holder = [state]

  def train():
    holder[0], m = step(holder[0], b)
    jax.block_until_ready(m["loss"])

  return {"forward": lambda: jax.block_until_ready(f(params, x)), "train": train}, out


def interleaved(path: str, B: int, S: int, repeats: int, rounds: int, dtypes: list[str]) -> tuple[dict, dict]:
  """Every side in this process, measurements alternated round by round (ours, HF, ours, HF, ...).

  Returns {(dtype, side): {"forward": [tokens/s per round], "train": [...]}} and our compile times: a ratio
  taken per round sees the same minutes of a shared machine on both sides.
  """
  sides, compiles = {}, {}
  for d in dtypes:
    for w in ("ours", "hf", "hf_sparse"):
      sides[(d, w)], info = _side(w, path, B, S, d)
      compiles[d] = {**compiles.get(d, {}), **info}
  for fns in sides.values():       # warm-up (and torch's first-call allocations) outside the rounds
    for fn in fns.values():
      fn()
  per_round = {k: {key: [] for key in fns} for k, fns in sides.items()}
  for _ in range(rounds):
    for key in ("forward", "train"):
      for k, fns in sides.items():
        if key in fns:
          per_round[k][key].append(B * S / median_seconds(fns[key], repeats))
  return per_round, compiles


def _trainer_config():
  """configs/modernbert_mlm.py (--config) with its model's vocabulary size (50,368 for base, 4,096 for default)
  over byte data: only the shapes matter, and the default's SentencePiece training is skipped."""
  from configs import modernbert_mlm
  c = modernbert_mlm.get_config("base" if _CONFIG.value == "base" else "")
  c.unlock()
  c.mesh.data = 1
  c.model.vocab_size = c.model.get("vocab_size") or c.data.vocab_size
  c.data.vocab = "byte"
  c.lock()
  return c


def _child(arg: str, extra: list[str]) -> dict:
  out = subprocess.run([sys.executable, "-m", "bench.modernbert_vs_hf", *extra, arg], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
  if not lines:
    print(out.stderr[-3000:], file=sys.stderr)
    return {}
  return json.loads(lines[-1])


_THROUGHPUT_CHILD = flags.DEFINE_string("throughput_child", "", "internal: 'ours:PATH' or 'hf:PATH'.")


def _record(train: dict, figures: dict, B: int, S: int, memory: dict | None = None) -> None:
  """bench/results/modernbert_vs_hf.json: `figures`, and the headline: our train step against transformers' and its
  sparse_prediction step in float32, then against transformers under autocast in bfloat16 (or, float32 only, the
  peak memory of the --long forward with the head). train: {(dtype, side): tokens/s}; memory: {(side, head): MiB}."""
  shape = "ModernBERT-base" if _CONFIG.value == "base" else "default config"
  headline = []
  for dtype, side, name in (("float32", "hf", "transformers"),
                            ("float32", "hf_sparse", "transformers, sparse_prediction"),
                            ("bfloat16", "hf", "transformers under autocast")):
    if (dtype, "ours") in train and (dtype, side) in train:
      headline.append(record.row(f"{shape} train step ({B} x {S}), {dtype}", train[(dtype, "ours")],
                                 train[(dtype, side)], "tokens/s", reference_name=name))
  if memory and len(headline) < 3:
    headline.append(record.row(f"{shape} peak memory increase, {_LONG.value}-token forward", memory[("ours", True)],
                               memory[("hf", True)], "MiB", higher_is_better=False, reference_name="transformers"))
  record.write("modernbert_vs_hf", figures, headline=headline)


def main(argv):
  del argv
  import tempfile
  if _MEMORY_CHILD.value:
    which, path = _MEMORY_CHILD.value.split(":", 1)
    print(json.dumps(memory_child(which, path, _LONG.value, _MEMORY_HEAD.value)))
    return
  if _THROUGHPUT_CHILD.value:
    which, path = _THROUGHPUT_CHILD.value.split(":", 1)
    print(json.dumps(throughput_child(which, path, _BATCH.value, _SEQ.value, _REPEATS.value, _DTYPE.value[0])))
    return
  if _ROUNDS.value and _MEMORY.value:
    raise SystemExit("--rounds measures throughput only (memory needs a fresh process per side): add --nomemory")
  import torch
  c = _trainer_config()
  B, S = _BATCH.value or c.train.batch_size, _SEQ.value or c.data.seq_len
  t = time.perf_counter()
  hf = _hf_model()
  build_s = time.perf_counter() - t
  n_params = sum(p.numel() for p in hf.parameters())
  path = tempfile.mkdtemp()
  hf.save_pretrained(path)
  del hf
  extra = [f"--config={_CONFIG.value}", f"--batch={B}", f"--seq={S}", f"--repeats={_REPEATS.value}",
           f"--long={_LONG.value}"]
  dtypes = _DTYPE.value
  if _ROUNDS.value:
    return _print_interleaved(path, B, S, n_params, build_s, dtypes)
  extra.append(f"--sparse_head={_SPARSE.value}")
  thr = {(d, w): _child(f"--throughput_child={w}:{path}", [*extra, f"--dtype={d}"]) for d in dtypes
         for w in ("ours", "hf", "hf_sparse")}
  mem = {(w, h): _child(f"--memory_child={w}:{path}", [*extra, f"--memory_head={h}"]).get("peak_increase_mib",
                                                                                      float("nan"))
         for h in (True, False) for w in ("ours", "hf")} if _MEMORY.value else {}
  import jax
  compiles = "; ".join(f"{d}: forward {thr[(d, 'ours')].get('compile_forward_s', 0):.1f}s, train step "
                       f"{thr[(d, 'ours')].get('compile_train_s', 0):.1f}s" for d in dtypes)
  shape = "ModernBERT-base shape" if _CONFIG.value == "base" else "the default config's shape"
  print(f"{shape} ({n_params / 1e6:.1f}M), batch {B} x {S}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), jax {jax.__version__}, {os.cpu_count()} cores; HF model build "
        f"{build_s:.0f}s; our compile: {compiles}")
  print(f"ours: objective.sparse_head={_SPARSE.value}; HF sparse_prediction: transformers' MLM head on the "
        "labelled positions only (train step)")
  print("| measurement | dtype | ours | HF PyTorch | ratio (ours / HF) | HF sparse_prediction | ratio (ours / HF "
        "sparse) | ours / our float32 | HF / HF float32 |\n|---|---|---|---|---|---|---|---|---|")
  nan = float("nan")
  for key, name in (("forward", "forward"), ("train", "train step")):
    for d in dtypes:
      o, h, hs = (thr[(d, w)].get(key, nan) for w in ("ours", "hf", "hf_sparse"))
      o32, h32 = thr.get(("float32", "ours"), {}).get(key, nan), thr.get(("float32", "hf"), {}).get(key, nan)
      sparse = f"{hs:,.0f} | {o / hs:.2f}" if key == "train" else " | "
      print(f"| {name} tokens/s (batch {B} x {S}) | {d} | {o:,.0f} | {h:,.0f} | {o / h:.2f} | {sparse} | "
            f"{o / o32:.2f} | {h / h32:.2f} |")
  for h, name in ((True, "with the vocabulary head"), (False, "encoder only")) if mem else ():
    o, r = mem[("ours", h)], mem[("hf", h)]
    print(f"| peak memory increase, {_LONG.value}-token forward, {name} (MiB) | float32 | {o:,.0f} | {r:,.0f} | "
          f"{o / r:.2f} | | |")
  _record({k: v["train"] for k, v in thr.items() if "train" in v},
          {"config": _CONFIG.value, "batch": B, "seq": S, "parameters": n_params, "torch": torch.__version__,
           "sparse_head": _SPARSE.value, "tokens_per_s": {f"{d}/{w}": v for (d, w), v in thr.items()},
           "peak_memory_increase_mib": {f"{w}/{'with head' if h else 'encoder only'}": v for (w, h), v in mem.items()}},
          B, S, mem)


def _print_interleaved(path, B, S, n_params, build_s, dtypes):
  import statistics

  import jax
  import torch

  from bench.timing import cpu_model
  per_round, compiles = interleaved(path, B, S, _REPEATS.value, _ROUNDS.value, dtypes)
  shape = "ModernBERT-base shape" if _CONFIG.value == "base" else "the default config's shape"
  comp = "; ".join(f"{d}: forward {c['compile_forward_s']:.1f}s, train step {c['compile_train_s']:.1f}s"
                   for d, c in compiles.items())
  print(f"{shape} ({n_params / 1e6:.1f}M), batch {B} x {S}, both sides in one process over {_ROUNDS.value} "
        f"alternated rounds of {_REPEATS.value}; {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), jax {jax.__version__}; HF model build {build_s:.0f}s; our compile: "
        f"{comp}")
  print(f"ours: objective.sparse_head={_SPARSE.value}; HF sparse_prediction: transformers' MLM head on the "
        "labelled positions only (train step)")
  print("| measurement | dtype | ours (median of rounds) | HF PyTorch | ratio per round (ours / HF) | median ratio | "
        "HF sparse_prediction | ratio per round (ours / HF sparse) | median ratio | ours / our float32 (median of "
        "rounds) |\n|---|---|---|---|---|---|---|---|---|---|")
  med = statistics.median

  def ratios(a, b):
    r = [x / y for x, y in zip(a, b)]
    return f"{' / '.join(f'{x:.2f}' for x in r)} | {med(r):.2f}"

  for key, name in (("forward", "forward"), ("train", "train step")):
    for d in dtypes:
      o, h, hs = (per_round[(d, w)].get(key) for w in ("ours", "hf", "hf_sparse"))
      o32 = per_round.get(("float32", "ours"), {}).get(key)
      sparse = f"{med(hs):,.0f} | {ratios(o, hs)}" if hs else " | | "
      print(f"| {name} tokens/s (batch {B} x {S}) | {d} | {med(o):,.0f} | {med(h):,.0f} | {ratios(o, h)} | {sparse} | "
            f"{f'{med([a / b for a, b in zip(o, o32)]):.2f}' if o32 else '- (float32 not run)'} |")
  _record({k: med(v["train"]) for k, v in per_round.items()},
          {"config": _CONFIG.value, "batch": B, "seq": S, "parameters": n_params, "torch": torch.__version__,
           "sparse_head": _SPARSE.value, "rounds": _ROUNDS.value, "repeats": _REPEATS.value, "compile_s": compiles,
           "tokens_per_s_per_round": {f"{d}/{w}": v for (d, w), v in per_round.items()}}, B, S)


if __name__ == "__main__":
  app.run(main)
