"""Tiny ModernBERT MLM for tests and smoke runs: byte vocabulary, 2 layers (global + sliding window), d=32.

Command: python launch.py --config=configs/test_tiny.py --workdir=/tmp/tiny
Expected result: finishes in well under a minute on CPU; the loss decreases from about ln(260) = 5.6.
"""
from configs.modernbert_mlm import get_config as mlm_config


def get_config(arg: str | None = None):
  del arg
  c = mlm_config()
  c.unlock()
  m = c.model
  m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 32, 2, 2, 48
  m.global_attn_every_n_layers = 2
  m.local_attention = 16
  c.data.vocab = "byte"
  c.data.seq_len = 32
  c.data.max_doc_chars = 256
  c.train.batch_size = 8
  c.train.num_steps = 6
  c.train.log_every = 2
  c.train.eval_every = 3
  c.train.checkpoint_every = 3
  c.optim.warmup_steps = 2
  c.eval.num_batches = 2
  c.eval.batch_size = 8
  c.decode.prompts = ("import [MASK][MASK]",)
  c.lock()
  return c
