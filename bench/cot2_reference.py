"""The same training work in PyTorch + transformers, written the way the official CoT2 code does it (spec §3-4):
a GPT2LMHeadModel (vocab 89, 2 layers, 2 heads, width d, dropout 0.1, tied embeddings), AdamW, batch 16.

  csft      the prompt `<BOS> D..` through the model with use_cache=True, then for each of the L-1 thought steps
            the KL to the uniform target at the last position and the target mixture @ W_E fed as one
            `inputs_embeds` position with the cache (hard_teacher), then CE of the final logits; one backward.
  discrete  model(input_ids=line, labels=line): next-token CE on the whole line; one backward.

Used by bench/cot2.py --speed for the seconds-per-epoch comparison (a reference, never imported by the library).
"""
import statistics
import time

import numpy as np


def _batches(method: str, steps: int, batch: int = 16, seed: int = 42):
  from data import mnns
  task = mnns.Mnns()
  train_idx, _ = task.split(seed)
  rows = mnns.rows(task, "discrete" if method == "discrete" else "csft", train_idx).arrays
  r = np.random.default_rng(0)
  for _ in range(steps):
    i = r.choice(len(train_idx), batch, replace=False)
    yield {k: v[i] for k, v in rows.items()}


def step_seconds(method: str, d: int = 32, steps: int = 200, warmup: int = 5) -> dict:
  import torch
  import torch.nn.functional as F
  import transformers
  torch.manual_seed(0)
  cfg = transformers.GPT2Config(vocab_size=89, n_positions=11, n_embd=d, n_layer=2, n_head=2)
  model = transformers.GPT2LMHeadModel(cfg)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
  W = model.transformer.wte.weight

  def csft(b):
    prompt = torch.as_tensor(b["prompt"], dtype=torch.long)
    targets = torch.as_tensor(b["targets"])
    answer = torch.as_tensor(b["answer"], dtype=torch.long)
    out = model(input_ids=prompt, use_cache=True)
    loss = torch.zeros(())
    for t in range(targets.shape[1] - 1):
      logits = out.logits[:, -1]
      p = targets[:, t]
      loss = loss + (-(p * F.log_softmax(logits, -1)).sum(-1) + (p * torch.log(p + 1e-8)).sum(-1)).mean()
      out = model(inputs_embeds=(p @ W)[:, None], past_key_values=out.past_key_values, use_cache=True)
    return loss + F.cross_entropy(out.logits[:, -1], answer)

  def discrete(b):
    line = torch.as_tensor(b["tokens"], dtype=torch.long)
    return model(input_ids=line, labels=line).loss

  fn = csft if method == "cot2" else discrete
  times = []
  for i, b in enumerate(_batches(method, steps + warmup)):
    t = time.perf_counter()
    loss = fn(b)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if i >= warmup:
      times.append(time.perf_counter() - t)
  return {"step_s": statistics.median(times), "threads": torch.get_num_threads()}
