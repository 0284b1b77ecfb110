"""Masked diffusion LM (MDLM) on the Python standard library's source, with the diffusion samplers.

Commands (2-core CPU):
  python launch.py --config=configs/mdlm.py --workdir=/tmp/mdlm              # about 5-7 minutes
  python launch.py --config=configs/mdlm.py --workdir=/tmp/mdlm --mode=decode \\
      --text=$'def close(self):\\n    [MASK][MASK][MASK][MASK][MASK][MASK]' --config.decode.tokens_per_call=2
Expected result (default, 500 steps of 16 x 128 tokens, the shape of configs/causal_lm.py:modern: 4 layers,
d = 256, GeGLU 768, full attention, SentencePiece 4k): the validation loss is the NELBO in nats per real token, an
upper bound on the NLL per token (measured 5.47, against 3.73 for that causal LM on the same data: RESULTS.md);
the closing samples fill the prompts' "[MASK]"s with the exact one-token-per-call sampler (decode.tokens_per_call=1,
rule "entropy"), or continue a prompt without masks by decode.max_new_tokens tokens.

Arguments: (none) the default above; "tiny" a 2-layer d = 32 byte-level model for tests and smoke runs.
The denoiser is ModernBERT's encoder and head under the SUBS parameterisation (models/mdlm/model.py); the loss is
the continuous-time NELBO with the linear schedule (models/mdlm/objective.py). Sampler settings:
decode/diffusion_fill.py.
"""
from configs import modernbert_mlm
from configs.base import prune_unread


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny"):
    raise ValueError(f"configs/mdlm.py: unknown argument {arg!r}; use 'tiny' or nothing")
  c = modernbert_mlm.get_config()     # the default ModernBERT job's encoder and training schedule
  c.unlock()
  m = c.model
  m.name = "mdlm"
  # configs/causal_lm.py:modern's shape (d 256, 4 layers, 4 heads, GeGLU 768, every layer global): RESULTS.md
  # compares the two on the same data.
  m.intermediate_size = 768
  m.global_attn_every_n_layers = 1

  o = c.objective
  o.loss_weighting = "nelbo"
  o.min_t = 1e-3
  o.antithetic = True

  d = c.decode
  d.prompts = ("def [MASK](self):\n    return self._name", "import os\n\ndef ")
  d.sampler = "unmask"
  d.rule = "entropy"
  d.tokens_per_call = 1
  d.threshold = 0.0
  d.block_len = 0
  d.num_steps = 64
  d.temperature = 1.0
  d.top_k = 0
  d.top_p = 1.0
  d.max_new_tokens = 16
  d.trajectories = 0                # > 0: --mode=decode also writes that many trajectories (configs/adjust.py)
  d.trajectory_file = ""
  if arg == "tiny":
    m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 32, 2, 2, 64
    m.local_attention = 16
    c.data.vocab = "byte"
    c.data.seq_len = 32
    c.data.max_doc_chars = 256
    c.train.batch_size = 8
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.eval_every = c.train.checkpoint_every = 3
    c.optim.warmup_steps = 2
    c.eval.num_batches, c.eval.batch_size = 2, 8
    d.prompts = ("import [MASK][MASK]",)
    d.max_new_tokens = 4
  prune_unread(c)                   # the masked-LM keys (objective.mask_rate, eval.mask_rate)
  c.lock()
  return c
