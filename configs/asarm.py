"""Any-subset autoregressive model (AS-ARM) on the Python standard library's source, decoded with ASSD.

Commands (2-core CPU):
  python launch.py --config=configs/asarm.py --workdir=/tmp/asarm                  # about 15-25 minutes
  python launch.py --config=configs/asarm.py --workdir=/tmp/asarm --mode=decode \\
      --text=$'def close(self):\\n    [MASK][MASK][MASK][MASK][MASK][MASK]'
Expected result (default, 1500 steps, 3.7M parameters): validation joint NLL (the teacher-forced chain, masking
rates 5-95%) about 3.75 nats per target and parallel (draft) NLL about 4.5 (measured: 3.745 and 4.521); the closing
samples infill config.decode.prompts' "[MASK]"s (one token each) with ASSD. bench/assd_speed.py measures
ASSD against sequential decoding on this model; bench/asarm_infill.py scores single-line infilling.

Arguments: (none) the default above; "tiny" a 2-layer d=32 byte-level model for tests and smoke runs.
The model is a pre-norm RoPE transformer run as one stream (content tokens + one query token per target).
Training: joint loss over random visible subsets (canonical order) + parallel_weight x the draft loss, masking rates
stratified over the batch, ramping from start_rate to [final_min_rate, final_max_rate] over rate_warmup_steps.
"""
from configs.base import get_base_config


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny"):
    raise ValueError(f"configs/asarm.py: unknown argument {arg!r}; use 'tiny' or nothing")
  c = get_base_config()
  m = c.model
  m.name = "asarm"
  m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 256, 4, 4, 512
  m.rope_theta = 10_000.0
  m.norm_eps = 1e-5
  m.hidden_activation = "gelu"
  m.initializer_range = 0.02

  o = c.objective
  o.start_rate = 0.15
  o.final_min_rate = 0.05
  o.final_max_rate = 0.95
  o.rate_warmup_steps = 500
  o.parallel_weight = 1.0

  c.data.seq_len = 64
  c.train.batch_size = 16
  c.train.num_steps = 1500
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.decode.assd_k = 5
  c.decode.temperature = 1.0
  c.decode.prompts = ("def close(self):\n    " + "[MASK]" * 8, "import [MASK][MASK]\n\nprint(os.getcwd())")
  if arg == "tiny":
    m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 32, 2, 2, 64
    c.data.vocab = "byte"
    c.data.seq_len = 24
    c.data.max_doc_chars = 256
    c.train.batch_size = 8
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.eval_every = c.train.checkpoint_every = 3
    o.rate_warmup_steps = 3
    c.optim.warmup_steps = 2
    c.eval.num_batches, c.eval.batch_size = 2, 8
    c.decode.prompts = ("import [MASK][MASK]",)
  c.lock()
  return c
