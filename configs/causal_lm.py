"""A small GPT-2-style causal LM on the Python standard library's source (SentencePiece 4k).

Command (2-core CPU, a few minutes):
  python launch.py --config=configs/causal_lm.py --workdir=/tmp/causal_lm
  python launch.py --config=configs/causal_lm.py --workdir=/tmp/causal_lm --mode=decode --text='import os
def '
Expected result (500 steps, about 5 minutes): validation next-token loss about 4.0 nats (measured 4.017, accuracy
0.287) against 6.10 for a unigram model of the training tokens; greedy continuations of config.decode.prompts
are still degenerate at this size (runs of "_"): RESULTS.md.
`:modern` switches to the pre-norm RoPE variant (bias-free LayerNorm, GeGLU): 3.73 nats at 500 steps, beside the
MDLM of the same shape (configs/mdlm.py) in RESULTS.md.
"""
from configs.base import get_base_config


def get_config(arg: str | None = None):
  c = get_base_config()
  m = c.model
  m.name = "causal_lm"
  m.style = "gpt2"
  m.hidden_size = 256
  m.num_layers = 4
  m.num_heads = 4
  m.intermediate_size = 1024
  m.max_position_embeddings = 128
  m.norm_eps = 1e-5
  m.activation = "gelu_new"
  m.rope_theta = 10_000.0
  m.initializer_range = 0.02
  m.attention_impl = "auto"
  if arg == "modern":
    m.style, m.intermediate_size = "modern", 768
  elif arg not in (None, ""):
    raise ValueError(f"configs/causal_lm.py: unknown argument {arg!r}; use ':modern' or nothing")
  c.train.num_steps = 500
  c.train.eval_every = 250
  c.train.checkpoint_every = 250
  c.optim.lr = 1e-3
  c.optim.weight_decay = 0.01
  c.decode.prompts = ("import os\ndef ", "class ")
  c.decode.max_new_tokens = 32      # continuation length
  c.decode.temperature = 0.0        # 0 = greedy
  c.decode.top_k = 0                # 0 = off
  c.decode.top_p = 1.0              # 1 = off
  c.lock()
  return c
