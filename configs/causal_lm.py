"""A small GPT-2-style causal LM on the Python standard library's source (SentencePiece 4k).

Command (2-core CPU, a few minutes):
  python launch.py --config=configs/causal_lm.py --workdir=/tmp/causal_lm
  python launch.py --config=configs/causal_lm.py --workdir=/tmp/causal_lm --mode=decode --text='import os
def '
Expected result (500 steps, about 5 minutes): validation next-token loss about 4.0 nats (measured 4.017, accuracy
0.287) against 6.10 for a unigram model of the training tokens; greedy continuations of config.decode.prompts
are still degenerate at this size (runs of "_"): RESULTS.md.
`:modern` switches to the pre-norm RoPE variant (bias-free LayerNorm, GeGLU): 3.73 nats at 500 steps, beside the
MDLM of the same shape (configs/mdlm.py) in RESULTS.md. `:tiny` (or `:modern,tiny`) is a 2-layer d = 32 byte-level
model that trains 30 steps in seconds, for tests and smoke runs.

Published shapes for accelerators and pod sizing (launch.py --mode=compile_only --compile_topology=...; the
vocabulary sizes are the released ones, data.vocab_size sizes the SentencePiece vocabulary trained here):
  :gpt2_medium  GPT-2 medium (24 layers, d 1024, 16 heads, MLP 4096, vocab 50,257, 1,024 positions; 355M)
  :gpt2_xl      GPT-2 XL (48 layers, d 1600, 25 heads, MLP 6400, vocab 50,257, 1,024 positions; 1.56B)
  :llama_1b     a Llama-3.2-1B-sized modern model (16 layers, d 2048, 32 heads, gated MLP 8192, vocab 128,256,
                2,048 tokens; 1.34B with the tied embedding)
  :llama_7b     a Llama-2-7B-sized modern model (32 layers, d 4096, 32 heads, gated MLP 11008, vocab 32,000, 4,096
                tokens; 6.6B)
The "llama" presets are shapes, not Llama: style="modern" has GeGLU (not SwiGLU), LayerNorm without bias (not
RMSNorm), a tied embedding and no grouped-query attention; FLOPs and memory are within a few percent.
"""

PRESETS = {   # layers, hidden, heads, MLP, vocab, sequence length, style, rope theta
    "gpt2_medium": (24, 1024, 16, 4096, 50_257, 1024, "gpt2", 10_000.0),
    "gpt2_xl": (48, 1600, 25, 6400, 50_257, 1024, "gpt2", 10_000.0),
    "llama_1b": (16, 2048, 32, 8192, 128_256, 2048, "modern", 500_000.0),
    "llama_7b": (32, 4096, 32, 11008, 32_000, 4096, "modern", 10_000.0),
}
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
  words = [w for w in (arg or "").split(",") if w]
  presets = [w for w in words if w in PRESETS]
  if set(words) - set(PRESETS) - {"modern", "tiny"} or len(presets) > 1 or (presets and len(words) > 1):
    raise ValueError(f"configs/causal_lm.py: unknown or conflicting argument {arg!r}; use ':modern', ':tiny', "
                     f"':modern,tiny', one of {[':' + k for k in PRESETS]}, or nothing")
  if "modern" in words:
    m.style, m.intermediate_size = "modern", 768
  elif presets:
    (m.num_layers, m.hidden_size, m.num_heads, m.intermediate_size, vocab, seq_len, m.style,
     m.rope_theta) = PRESETS[presets[0]]
    c.data.vocab_size = vocab
    c.data.seq_len = m.max_position_embeddings = seq_len
    c.train.batch_size = 8
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
  c.decode.prompt_end = "tokens"    # "heal": token healing; "bytes": exact byte-level view (decode/bytes.py)
  c.decode.regex = ""               # the continuation must match it (decode/constrained.py: AWRS particles)
  c.decode.particles = 8
  if "tiny" in words:               # 2 layers, d = 32, bytes: trains in seconds (tests, smoke runs)
    m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size, m.max_position_embeddings = 32, 2, 2, 64, 32
    c.data.vocab, c.data.seq_len, c.data.max_doc_chars = "byte", 32, 256
    c.train.batch_size, c.train.num_steps = 8, 30
    c.train.eval_every = c.train.checkpoint_every = 30
    c.optim.lr, c.optim.warmup_steps = 3e-3, 3
    c.decode.max_new_tokens = 8     # prompt + continuation must fit the 32-position table
  c.lock()
  return c
