"""AriEL (decode/ariel.py) on the fixture grammar (ariel.md §5.1): the language model AriEL codes around, and the
autoencoder / VAE baselines it is compared with (d = 16), each trained on the 80% training split of the 8,624
sentences (data.corpus=synthetic:house_questions, one framed sentence per row; validation = the held-out 20%).

Commands (2-core CPU):
  python launch.py --config=configs/ariel.py --workdir=/tmp/ariel_lm          # the causal LM, 104k parameters
  python launch.py --config=configs/ariel.py:ae --workdir=/tmp/ariel_ae       # GRU autoencoder, 88k parameters
  python launch.py --config=configs/ariel.py:vae --workdir=/tmp/ariel_vae     # GRU VAE, 89k parameters
  python launch.py --config=configs/ariel.py --workdir=/tmp/ariel_lm --mode=eval   # + AriEL's A7 / A8 figures
  python -m bench.ariel                     # trains all three and runs tests A7-A9 (RESULTS.md)
Expected result (1,500 steps each, 25-45 s each on 2 cores): held-out next-token loss 0.874 nats (LM), 0.003
(AE reconstruction), 0.863 with KL 0.17 nats per sentence (VAE, whose posterior collapses); bench.ariel ends with
`ariel_valid_unique=0.8900 ae_valid_unique=0.3940 vae_valid_unique=0.3230` (seed 0; RESULTS.md "AriEL").

Arguments (comma-separated): `ae` / `vae` (the baselines; default: the LM), `dropout` (word dropout 0.3 in the
baseline's decoder), `rules` (sentences weighted by the
grammar's uniform productions instead of uniformly), `tiny` (a few steps: tests).
"""
from configs import causal_lm
from configs.base import get_base_config, prune_unread

ARGS = ("ae", "vae", "dropout", "rules", "tiny")
LATENT_DIM = 16


def get_config(arg: str | None = None):
  args = tuple(a for a in (arg or "").split(",") if a)
  bad = [a for a in args if a not in ARGS]
  if bad:
    raise ValueError(f"configs/ariel.py: unknown argument(s) {bad}; use a comma-separated subset of {ARGS}")
  if "ae" in args or "vae" in args:
    c = get_base_config()
    c.unlock()
    m = c.model
    m.name = "sentence_vae"
    prune_unread(c)                   # the base's model.dtype / remat: the GRUs run in float32
    m.vocab_multiple = 1
    m.embed_dim, m.hidden_size, m.latent_dim = 32, 96, LATENT_DIM
    m.variational = "vae" in args
    c.objective.kl_warmup_steps = 500 if m.variational else 0
    c.objective.word_dropout = 0.0    # `dropout`: 0.3 (Bowman et al.'s remedy for the VAE's posterior collapse)
  else:
    c = causal_lm.get_config()        # GPT-2-style block; 2 layers, d=64
    c.unlock()
    m = c.model
    m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 64, 2, 4, 256
    m.max_position_embeddings = 16
    m.vocab_multiple = 1
    c.decode.prompts = ()             # sentences come from AriEL's decoder (bench/ariel.py), not prompts
    c.eval.analyses = ("ariel",)      # --mode=eval: AriEL reconstruction and uniform samples (A7, A8)
    c.eval.num_keys = 1
    c.eval.num_sequences = 2000
  if "dropout" in args:
    if m.name != "sentence_vae":
      raise ValueError("configs/ariel.py: `dropout` (word dropout) applies to :ae or :vae")
    c.objective.word_dropout = 0.3
  weights = "rules" if "rules" in args else "sentences"
  c.data.corpus = f"synthetic:house_questions:weights={weights}"
  c.data.vocab = "symbols"
  c.data.vocab_size = 38
  c.data.seq_len = 12                 # [CLS] + at most 10 words + [SEP]
  c.train.batch_size = 64
  c.train.num_steps = 1500
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.optim.lr = 2e-3
  c.optim.warmup_steps = 50
  c.optim.schedule = "cosine"
  c.optim.weight_decay = 0.01
  c.eval.batch_size = 128
  c.eval.num_batches = 4
  if "tiny" in args:
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.eval_every = c.train.checkpoint_every = 20
    c.optim.warmup_steps = 2
    c.eval.batch_size = 16
    c.eval.num_batches = 1
    if m.name == "causal_lm":
      c.eval.num_sequences = 64
    if m.name == "sentence_vae":
      c.objective.kl_warmup_steps = 10
  c.lock()
  return c
