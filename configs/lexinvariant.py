"""A lexinvariant causal LM (per-sequence random Gaussian token embeddings, tied readout) on the sparse Markov
language of the lexinvariant spec §6b: V=16 symbols with 2 successors each, context 128, 2 layers, d=64, 4 heads,
MLP 256, batch 32, AdamW 1e-3 (constant after 100 warm-up steps), learned positions with std 0.02.

Commands (2-core CPU):
  python launch.py --config=configs/lexinvariant.py --workdir=/tmp/lex
  python launch.py --config=configs/lexinvariant.py --workdir=/tmp/lex --mode=eval
Expected result (3,000 steps, about 5 minutes; RESULTS.md): eval loss 1.79 nats (the standard LM: 0.585, the
language's entropy rate 0.584); the eval prints the per-position NLL by bin, 2.10 at target positions 1-4 falling
to 1.75 at 65-127 (spec bar: a drop of at least 0.3), and the ciphered curve, whose mean moves by +0.002 (bar:
under 0.02). `bench/lexinvariant.py` trains this config and its `:standard` twin and compares them.

Arguments (comma-separated): `standard` (learned embeddings: the baseline of the same shape), `semi` (semi-
lexinvariant, model.semi_fraction=0.25), `zipf` (i.i.d. Zipf language, 1,500 steps), `unigram` (the in-context
unigram smoke language, 300 steps), `symbolic` (copy / key-value episodes over 32 symbols with held-out symbols at
evaluation, eval.analyses adds "symbolic"), `char` (character-level text of the embedded corpus: data.vocab=char,
130 ids, like the paper's vocabulary), `tiny` (d=32, 64 tokens, a few steps: tests).
"""
from configs import causal_lm

ARGS = ("standard", "semi", "zipf", "unigram", "symbolic", "char", "tiny")


def get_config(arg: str | None = None):
  args = tuple(a for a in (arg or "").split(",") if a)
  bad = [a for a in args if a not in ARGS]
  if bad:
    raise ValueError(f"configs/lexinvariant.py: unknown argument(s) {bad}; use a comma-separated subset of {ARGS}")
  c = causal_lm.get_config()         # the causal LM's GPT-2-style block (pre-LN, learned positions, GELU-tanh)
  c.unlock()
  m = c.model
  m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 64, 2, 4, 256
  m.max_position_embeddings = 128
  m.vocab_multiple = 1
  m.embedding = "learned" if "standard" in args else "semi" if "semi" in args else "lexinvariant"
  m.semi_fraction = 0.25 if m.embedding == "semi" else 0.0
  m.lex_embed_std = "one"            # N(0, 1) entries: row norm about sqrt(d), above the positions' (spec §3)
  m.lex_out_scale = True             # logits = s · LN(h)·Eᵀ / sqrt(d), s learned
  m.lex_sample = "full_vocab"         # the spec's literal E [B, V, D] per sequence (one per row); char: present
  m.pos_init_std = 0.02
  c.data.corpus = "synthetic:markov:successors=2,seed=0"
  c.data.vocab = "symbols"
  c.data.vocab_size = 16
  c.data.seq_len = 128
  c.train.batch_size = 32
  c.train.num_steps = 3000
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.schedule = "constant"
  c.optim.b2 = 0.999                 # PyTorch AdamW's defaults, as in the reference runs
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.01
  c.eval.batch_size = 64
  c.eval.num_batches = 8             # 512 held-out sequences
  c.eval.analyses = ("positions", "cipher")
  c.eval.num_keys = 4                # embedding draws averaged per sequence
  c.eval.num_sequences = 512
  c.decode.prompts = ()              # no cached decoding for random embeddings; --mode=eval shows the curves
  if "zipf" in args:
    c.data.corpus = "synthetic:zipf"
    c.train.num_steps = 1500
  if "unigram" in args:
    c.data.corpus = "synthetic:unigram:k=4"
    c.train.num_steps = 300
    c.optim.warmup_steps = 20
  if "symbolic" in args:
    c.data.corpus = "synthetic:symbolic"
    c.data.vocab_size = 32
    c.eval.analyses = ("positions", "symbolic")
  if "char" in args:
    c.data.corpus = "stdlib"
    c.data.vocab = "char"
    c.data.vocab_size = 130
    m.lex_sample = "present_types"    # packed documents: per-document draws of the types present
    c.data.max_doc_chars = 2048
    c.eval.analyses = ("positions", "cipher")
  if "tiny" in args:
    m.hidden_size, m.num_heads, m.intermediate_size, m.max_position_embeddings = 32, 2, 64, 64
    c.data.seq_len = 64
    c.train.batch_size = 8
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.eval_every = c.train.checkpoint_every = 20
    c.optim.warmup_steps = 2
    c.eval.batch_size = 8
    c.eval.num_batches = 2
    c.eval.num_keys = 2
    c.eval.num_sequences = 16
  c.lock()
  return c
