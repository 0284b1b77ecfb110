"""ELECTRA pretraining (replaced-token detection) on the Python standard library's source.

Commands (2-core CPU):
  python launch.py --config=configs/electra.py --workdir=/tmp/electra            # about 5 minutes
  python launch.py --config=configs/electra.py:mlm --workdir=/tmp/electra_mlm    # the same-size masked-LM baseline
Expected result (default, 600 steps): generator MLM loss falls from ln(4096) = 8.3 to about 5.5 nats; the
discriminator's loss falls below the prior's binary entropy (about 0.41 nats at 14.7% replaced tokens) as it starts
detecting replacements (disc_accuracy_replaced rises from 0, noisily: the generator's samples are plausible tokens,
much harder to spot than random ones); the closing samples fill config.decode.prompts' "[MASK]"s.
bench/electra_vs_mlm.py compares the two at equal training FLOPs by fine-tuning (RESULTS.md).

Arguments (comma-separated, e.g. `configs/electra.py:small,modernbert`):
  (none)      CPU-sized: ELECTRA-small widths (E 128, d 256, 4 heads, FFN 1024) with 4 layers, seq 128
  small       ELECTRA-Small (12 layers, d 256, E 128; generator 1/4: 64 wide, 1 head)       13.5M discriminator
  base        ELECTRA-Base (12 layers, d 768, E 768; generator 1/3 as released: 256 wide)    109.5M discriminator
  large       ELECTRA-Large (24 layers, d 1024, E 1024; generator 1/4; 25% masking)          335.1M discriminator
  tiny        2 layers, d 32, E 16, byte vocabulary (tests and smoke runs)
  modernbert  ModernBERT towers (RoPE, GeGLU, alternating local/global attention) instead of BERT blocks
  mlm         the masked-LM baseline of the same discriminator shape (BERT recipe: 80% [MASK], 10% random)
The paper's shapes use vocab 30,522 (BERT WordPiece); here the vocabulary comes from data.vocab (SentencePiece
4k by default). Optimiser: AdamW with bias correction (the original omits it), warmup, linear decay.
"""
from configs.base import get_base_config, masked_lm_defaults

SHAPES = {  # layers, hidden, heads, FFN, embedding, generator fraction
    "cpu": (4, 256, 4, 1024, 128, 0.25),
    "small": (12, 256, 4, 1024, 128, 0.25),
    "base": (12, 768, 12, 3072, 768, 1 / 3),
    "large": (24, 1024, 16, 4096, 1024, 0.25),
    "tiny": (2, 32, 2, 64, 16, 0.25),
}


def get_config(arg: str | None = None):
  words = [w for w in (arg or "").split(",") if w]
  unknown = set(words) - set(SHAPES) - {"modernbert", "mlm"}
  sizes = [w for w in words if w in SHAPES]
  if unknown or len(sizes) > 1:
    raise ValueError(f"configs/electra.py: unknown or conflicting argument {arg!r}; use one of {sorted(SHAPES)} "
                     "plus optionally 'modernbert' and/or 'mlm', comma-separated")
  size = sizes[0] if sizes else "cpu"
  c = masked_lm_defaults(get_base_config())
  m = c.model
  m.name = "electra_mlm" if "mlm" in words else "electra"
  layers, hidden, heads, ffn, emb, gen = SHAPES[size]
  m.num_layers, m.hidden_size, m.num_heads, m.intermediate_size, m.embedding_size = layers, hidden, heads, ffn, emb
  m.generator_hidden_size = gen
  m.generator_layers = 1.0
  m.backbone = "modernbert" if "modernbert" in words else "classic"
  m.hidden_act = "gelu"
  m.max_position_embeddings = 512
  m.type_vocab_size = 2
  m.layer_norm_eps = 1e-12
  m.initializer_range = 0.02
  m.dropout_rate = 0.0              # the paper: 0.1 (hidden dropout); off for short runs
  m.global_attn_every_n_layers = 3  # modernbert backbone
  m.local_attention = 64
  m.global_rope_theta = 160_000.0
  m.local_rope_theta = 10_000.0
  m.attention_impl = "auto"

  o = c.objective
  o.mask_rate = 0.25 if size == "large" else 0.15
  if "mlm" in words:                # BERT's corruption
    o.mask_token_frac, o.random_token_frac = 0.8, 0.1
  else:                             # ELECTRA: no random-token branch, the generator replaces
    o.mask_token_frac, o.random_token_frac = 0.85, 0.0
  if "mlm" not in words:            # the joint model's loss weights and sampling temperature
    o.gen_weight = 1.0
    o.disc_weight = 50.0
    o.temperature = 1.0
  c.eval.mask_rate = o.mask_rate

  c.data.seq_len = 128
  c.train.batch_size = 16
  c.train.num_steps = 600
  c.train.eval_every = 300
  c.train.checkpoint_every = 300
  c.optim.lr = 5e-4                 # ELECTRA-small's; 1e-3 leaves the post-norm discriminator at its prior longer
  c.optim.warmup_steps = 60
  c.optim.schedule = "linear"
  c.optim.end_lr_frac = 0.0
  c.optim.b2 = 0.999
  c.optim.weight_decay = 0.01
  if size in ("small", "base", "large"):
    c.optim.lr = {"small": 5e-4, "base": 2e-4, "large": 2e-4}[size]
    c.optim.warmup_steps = 10_000
    c.train.num_steps = 1_000_000 if size == "small" else 766_000 if size == "base" else 400_000
    c.train.batch_size = {"small": 128, "base": 256, "large": 2048}[size]
    c.data.seq_len = 128 if size == "small" else 512
    c.data.vocab_size = 30_522
    m.vocab_size = 30_522           # the released models' embedding rows (BERT uncased WordPiece)
    c.train.eval_every = c.train.checkpoint_every = 10_000
  if size == "tiny":
    c.data.vocab = "byte"
    c.data.seq_len = 32
    c.data.max_doc_chars = 256
    m.max_position_embeddings = 64
    m.local_attention = 16
    c.train.batch_size = 8
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.eval_every = c.train.checkpoint_every = 3
    c.optim.warmup_steps = 2
    c.eval.num_batches, c.eval.batch_size = 2, 8
    c.decode.prompts = ("import [MASK][MASK]",)
  c.lock()
  return c
