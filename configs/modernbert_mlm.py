"""Default job: a small ModernBERT masked LM on the Python standard library's source (SentencePiece 4k).

Command (2-core CPU, about 4 minutes including vocabulary training, compilation, eval and decoding):
  python launch.py --workdir=/tmp/modernbert_mlm
Expected result (500 steps): validation masked-token accuracy about 0.34 and loss about 3.8 nats at 15% masking
(RESULTS.md); the final samples fill the "[MASK]"s of config.decode.prompts.

Published shapes (vocabulary sizes as released; 8,192 positions; seq 512 here, raise data.seq_len up to 8192 with
--config.model.attention_impl=chunked for long context):
  :base      ModernBERT-base  (22 layers, d=768, 12 heads, GeGLU 1152, vocab 50,368; 149.7M parameters)
  :large     ModernBERT-large (28 layers, d=1024, 16 heads, GeGLU 2624, vocab 50,368; 395.9M parameters)
  :tabibert  TabiBERT (ModernBERT-base shape, vocab 50,176 as its paper states; not checked against a config.json)
e.g. `python launch.py --config=configs/modernbert_mlm.py:base --config.mesh.fsdp=8 ...` on accelerators, or
bench/train_throughput.py on CPU.
"""
from configs.base import get_base_config, masked_lm_defaults


def get_config(arg: str | None = None):
  c = masked_lm_defaults(get_base_config())
  m = c.model
  m.name = "modernbert_mlm"
  m.attention_impl = "auto"
  m.hidden_size = 256
  m.num_layers = 4
  m.num_heads = 4
  m.intermediate_size = 384
  m.global_attn_every_n_layers = 3
  m.local_attention = 64
  m.global_rope_theta = 160_000.0
  m.local_rope_theta = 10_000.0
  m.norm_eps = 1e-5
  m.hidden_activation = "gelu"
  m.classifier_activation = "gelu"
  m.initializer_range = 0.02
  c.objective.sparse_head = True    # MLM head at the masked positions only (models/modernbert/objective.py)
  c.train.num_steps = 500
  c.train.eval_every = 250
  c.train.checkpoint_every = 250
  m.max_position_embeddings = 8192
  if arg in ("base", "large", "tabibert"):
    if arg == "large":
      m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 1024, 28, 16, 2624
    else:
      m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 768, 22, 12, 1152
    m.vocab_size = 50_176 if arg == "tabibert" else 50_368
    m.local_attention = 128
    c.data.seq_len = 512
    c.data.vocab_size = 32_768
    c.train.batch_size = 8
  elif arg not in (None, ""):
    raise ValueError(f"configs/modernbert_mlm.py: unknown argument {arg!r}; use ':base', ':large', ':tabibert' "
                     "or nothing")
  c.lock()
  return c
