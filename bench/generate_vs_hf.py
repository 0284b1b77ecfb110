"""Generation throughput: our jitted KV-cache generation against Hugging Face `generate`, same GPT-2 weights.

  python -m bench.generate_vs_hf [--batches=1,8 --new_tokens=128 --prompt=16 --repeats=3] [--size=small]
      [--torch_device=cpu]

Builds a random-weight GPT-2 (--size: small, 124M, or medium, 355M) in transformers, converts it with
models.hf.load_gpt2, checks that both produce the same greedy tokens, then times greedy generation of --new_tokens
tokens (min = max, no early stop) for each batch size: median of --repeats runs each, ours after a separate
compile-and-run (compile time reported separately). --torch_device=cuda runs the reference on the GPU that JAX uses
(bench/accelerator.sh); the greedy tokens are then compared as computed (TF32 / kernel choices may move a near-
tie). Prints a Markdown table for BENCHMARKS.md. Needs requirements-test.txt (torch, transformers).
"""
import os
import statistics
import tempfile
import time

from absl import app, flags

from bench import record

_BATCHES = flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.")
_NEW = flags.DEFINE_integer("new_tokens", 128, "Tokens to generate.")
_PROMPT = flags.DEFINE_integer("prompt", 16, "Prompt length.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per setting.")
_SIZE = flags.DEFINE_enum("size", "small", ["small", "medium"], "GPT-2 size (random weights).")
_TORCH_DEVICE = flags.DEFINE_string("torch_device", "cpu", "Where the transformers reference runs: cpu or cuda.")


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  import transformers

  from decode.generate import generate
  from models.hf import load_gpt2
  torch.manual_seed(0)
  shape = {} if _SIZE.value == "small" else dict(n_embd=1024, n_layer=24, n_head=16)
  hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**shape)).eval()
  path = tempfile.mkdtemp()
  hf.save_pretrained(path)
  model, params = load_gpt2(path)
  params = jax.device_put(params)
  n = _NEW.value
  hf = hf.to(_TORCH_DEVICE.value)
  print(f"GPT-2 {_SIZE.value} (random weights), reference on {_TORCH_DEVICE.value}, prompt {_PROMPT.value}, "
        f"{n} new tokens, greedy; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), jax {jax.__version__} ({jax.devices()[0].platform}), "
        f"{os.cpu_count()} cores")
  print("| batch | ours tokens/s | HF tokens/s | ratio | our compile + first run (s) | same tokens |")
  print("|---|---|---|---|---|---|")
  figures, headline = {"size": _SIZE.value, "prompt": _PROMPT.value, "new_tokens": n,
                       "torch_device": _TORCH_DEVICE.value, "torch": torch.__version__, "batches": []}, []
  for b in map(int, _BATCHES.value):
    prompt = np.random.default_rng(b).integers(0, 50257, (b, _PROMPT.value)).astype(np.int32)
    lengths = jnp.full((b,), _PROMPT.value, jnp.int32)

    def ours():
      toks, _ = generate(model.apply, model.init_cache, params, jnp.asarray(prompt), lengths, jax.random.PRNGKey(0),
                         max_new_tokens=n)
      return np.asarray(jax.block_until_ready(toks))

    t = time.perf_counter()
    our_tokens = ours()
    compile_s = time.perf_counter() - t

    def theirs():
      with torch.inference_mode():
        out = hf.generate(torch.tensor(prompt, dtype=torch.long, device=_TORCH_DEVICE.value), do_sample=False,
                          max_new_tokens=n, min_new_tokens=n, pad_token_id=0, eos_token_id=None)
        return out.cpu().numpy()   # the copy back waits for the GPU, as ours does

    hf_tokens = theirs()
    same = bool(np.array_equal(our_tokens, hf_tokens))
    t_ours, t_hf = [], []
    for _ in range(_REPEATS.value):   # interleaved, so that load changes hit both
      t = time.perf_counter(); ours(); t_ours.append(time.perf_counter() - t)  # noqa: E702
      t = time.perf_counter(); theirs(); t_hf.append(time.perf_counter() - t)  # noqa: E702
    ours_tps, hf_tps = b * n / statistics.median(t_ours), b * n / statistics.median(t_hf)
    print(f"| {b} | {ours_tps:,.1f} | {hf_tps:,.1f} | {ours_tps / hf_tps:.2f} | {compile_s:.1f} | {same} |",
          flush=True)
    figures["batches"].append({"batch": b, "ours_tokens_per_s": ours_tps, "hf_tokens_per_s": hf_tps,
                               "our_compile_s": compile_s, "same_tokens": same})
    headline.append(record.row(f"GPT-2 {_SIZE.value} greedy generation, batch {b}", ours_tps, hf_tps, "tokens/s",
                               reference_name=f"transformers generate, {_TORCH_DEVICE.value}"))
  record.write("generate_vs_hf", figures, headline=headline)


if __name__ == "__main__":
  app.run(main)
