"""Shared defaults. Experiment configs start from `get_base_config()` and add their family's keys.

The config is locked: an override of a key that does not exist (`--config.optim.lrr=1`) is an error. The
sections `model`, `objective` and `decode` (and data.task, data.num_classes, eval.mask_rate) belong to the model
family: a config holds exactly the keys its family reads there (configs/families/ checks it before anything is
built), so no key silently does nothing. `prune_unread` drops the ones a derived config's family does not read.
"""
import ml_collections

from configs import sharding


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "modernbert_mlm"
  c.model.vocab_size = 0            # 0: the vocabulary's size rounded up to vocab_multiple
  c.model.vocab_multiple = 64
  c.model.dtype = "float32"         # compute dtype: "float32" or "bfloat16" (parameters stay float32)
  c.model.remat = "none"           # per layer: "none", "full", "dots_saveable", "offload" (models/layers/remat.py)
  # Families with attention choices add model.attention_impl: "auto" (banded windows where T > 4 x the half
  # window, else dense; dense global), "chunked"
  # (no T x T at all: long context), "einsum", "xla", "cudnn" (NVIDIA: fused flash attention).

  c.objective = ml_collections.ConfigDict()   # the family's objective keys

  c.data = ml_collections.ConfigDict()
  c.data.corpus = "stdlib"          # "stdlib", a text file / directory of .txt and .py files, .jsonl / .parquet
  #                                   files or globs, "tokenized:DIR" (python -m data.prepare), or "seqio:<task>"
  c.data.vocab = "spm"              # "byte", "spm" (trained on the corpus, cached), a .model file,
  #                                   "hf:<dir or tokenizer.json>" (a Hugging Face tokenizer), "seqio:<task>"
  c.data.text_field = "text"        # the JSON field / Parquet column of .jsonl / .parquet corpora
  c.data.vocab_size = 4096          # for "spm"
  c.data.cache_dir = ""             # SentencePiece cache; default $LMKIT_CACHE or ~/.cache/lmkit
  c.data.seq_len = 128
  c.data.max_doc_chars = 2048       # paragraphs longer than this are cut at line boundaries
  c.data.validation_percent = 5
  c.data.packing = "concat_split"   # or "first_fit" (documents kept whole, rows padded)
  c.data.num_shards = 0             # 0: one data shard per process (see data/pipeline.py)
  c.data.seqio_modules = ()         # modules to import that register seqio Tasks ("seqio:<task>" corpus/vocab)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1                  # one axis may be -1: all remaining devices
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.logical_axis_rules = sharding.RULES

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 16           # global batch, in sequences
  c.train.num_steps = 200
  c.train.stop_after_steps = 0      # >0: end this invocation after that many steps, with a checkpoint (a time slice;
                                    # the schedule still spans num_steps; launch again to continue)
  c.train.grad_accum_steps = 1
  c.train.grad_accum_unroll = False   # True: micro-batches as independent branches (CPU: run concurrently; README)
  c.train.log_every = 10
  c.train.eval_every = 100
  c.train.checkpoint_every = 100
  c.train.sample_every = 0          # 0: sample only at the end
  c.train.peak_flops_per_device = 0.0   # for MFU; 0: a table by device kind, measured on CPU (the model's dtype)

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 20
  c.optim.schedule = "cosine"       # "cosine", "linear" or "constant" (after warmup)
  c.optim.end_lr_frac = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.98
  c.optim.eps = 1e-6
  c.optim.weight_decay = 1e-5
  c.optim.clip_norm = 1.0
  c.optim.moment_dtype = "float32"  # or "bfloat16": AdamW's first moment stored in bf16 (train/optim.py)

  c.tracker = "tensorboard"          # or "wandb": TensorBoard plus Weights & Biases, offline (train/trackers.py)

  c.profile = ml_collections.ConfigDict()   # a jax.profiler trace into workdir/profile (train/profiling.py)
  c.profile.start_step = 10         # the first traced step (metrics.jsonl numbering)
  c.profile.num_steps = 0           # 0: no profiling

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.max_to_keep = 3
  c.checkpoint.async_save = True
  c.checkpoint.init_from = ""       # weights-only initialisation from another run's workdir (latest step); its
                                    # model.* (and a tokenizer-file data.vocab) are adopted where not set
                                    # (train/stored_config.py)
  c.checkpoint.allow_partial = False  # init_from may leave more than 10% of the weights fresh (else one line)

  c.eval = ml_collections.ConfigDict()
  c.eval.num_batches = 8
  c.eval.batch_size = 16

  c.decode = ml_collections.ConfigDict()      # the family's decoding keys (prompts, sampler settings)

  c.distributed = ml_collections.ConfigDict()
  c.distributed.init_timeout = 300  # seconds to wait for all processes at start-up
  return c


def masked_lm_defaults(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The keys every masked-LM family reads: masking rates and the "[MASK]"-filling prompts."""
  c.objective.mask_rate = 0.3
  c.eval.mask_rate = 0.15           # ModernBERT evaluates at 15% masking
  c.decode.prompts = ("def [MASK](self):\n    return self._name", "import [MASK]\nos.path.join(a, b)")
  return c


def prune_unread(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Drops the family-owned keys that `c.model.name`'s family does not read (for a config derived from another
  family's, e.g. a classifier from its pretraining config). Call before `c.lock()`."""
  from configs import families
  keys = families.registration(c.model.name).keys
  for key in families.family_keys(c):
    if key not in keys:
      *parents, leaf = key.split(".")
      node = c
      for p in parents:
        node = node[p]
      del node[leaf]
  return c


def use_stdlib_packages_task(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Fine-tuning on the 8-class stdlib-package task (data/tasks.py) with the settings every family shares:
  300 steps, AdamW 3e-4 with 30 warmup steps, cosine decay, evaluation on 16 batches, two paragraphs to classify
  as decode.prompts. Set model.name first: the keys the classifier family does not read are dropped."""
  c.model.pooling = "mean"
  c.data.task = "stdlib_packages"
  c.data.num_classes = 8
  c.data.max_doc_chars = 1024
  c.train.num_steps = 300
  c.train.eval_every = 100
  c.train.checkpoint_every = 300
  c.optim.lr = 3e-4
  c.optim.warmup_steps = 30
  c.optim.schedule = "cosine"
  c.optim.end_lr_frac = 0.1
  c.eval.num_batches = 16
  # --mode=decode (and the closing samples): each paragraph's label probabilities, most probable first.
  c.decode.prompts = ("async def main():\n    await asyncio.sleep(1)",
                      "msg = EmailMessage()\nmsg['Subject'] = 'Hello'")
  return prune_unread(c)
