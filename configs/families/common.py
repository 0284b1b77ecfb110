"""Pieces several builders share: the embedded-corpus data sources and the fill-mask decode hook."""
import functools
from typing import Any

from data.sources import Documents, LabelledTask, framed_rows
from data.vocab import Vocabulary

TASKS = ("stdlib_packages",)
CLASSIFICATION_KEYS = {"data.task": TASKS, "data.num_classes": None}


def documents(config: Any, vocab: Vocabulary) -> Documents:
  return Documents(config.data, vocab)


def labelled_task(config: Any, vocab: Vocabulary) -> LabelledTask:
  """`data.task` (only "stdlib_packages": data/tasks.py) with `data.num_classes` classes, built when first read."""
  from data.tasks import stdlib_packages
  d = config.data
  task = functools.cache(lambda: stdlib_packages(d.num_classes, d.max_doc_chars,
                                                 validation_percent=d.validation_percent))
  return LabelledTask(task, vocab, d.seq_len, d.num_shards)


def classify_decoder(apply_fn, config: Any, vocab: Vocabulary, top_k: int = 5):
  """Each text's label probabilities (the top_k labels by name; decode/classify.py), e.g. for --text=PARAGRAPH."""
  seq_len = config.data.seq_len
  names = functools.cache(lambda: labelled_task(config, vocab).task().class_names)

  def decode(params, texts, mesh=None):
    from decode.classify import describe_labels, label_probabilities
    probs = label_probabilities(apply_fn, params, vocab, list(texts), seq_len, mesh)
    return [describe_labels(p, names(), top_k) for p in probs]
  return decode


def fill_mask_decoder(apply_fn, config: Any, vocab: Vocabulary, top_k: int = 5):
  """Fills each prompt's "[MASK]"s, most confident first, and lists under the filled text the `top_k` candidates of
  each mask with their probabilities from one pass over the prompt as given (what `pipeline("fill-mask")` shows;
  decode/fill_mask.py)."""
  seq_len = config.data.seq_len
  framed_rows(vocab, config.decode.prompts, seq_len)   # refuse too-long prompts before training, not after
  _check_masks(vocab, config.decode.prompts)

  def decode(params, prompts, mesh=None):
    from decode.fill_mask import describe_candidates, fill_mask_texts
    _check_masks(vocab, prompts)
    filled, cands = fill_mask_texts(apply_fn, params, vocab, list(prompts), seq_len, mesh, top_k=top_k)
    return [f + ("\n" + describe_candidates(vocab, c) if c else "") for f, c in zip(filled, cands)]
  return decode


def _check_masks(vocab: Vocabulary, prompts) -> None:
  """A masked LM fills "[MASK]"s: a prompt without one would come back unchanged, so it is refused (one line)."""
  for p in prompts:
    if vocab.mask_id not in vocab.encode_with_masks(p):
      raise ValueError(f"prompt {p[:60]!r} has no [MASK] to fill; mark each token to predict with [MASK], e.g. "
                       "--text='import [MASK]'")


def model_vocab_size(config: Any, vocab: Vocabulary) -> int:
  """The embedding size: `model.vocab_size` if set, else the vocabulary rounded up to `model.vocab_multiple`."""
  if config.model.vocab_size:
    if config.model.vocab_size < vocab.size:
      raise ValueError(f"model.vocab_size={config.model.vocab_size} is smaller than the vocabulary ({vocab.size} "
                       f"ids); set --config.model.vocab_size=0 to derive it")
    return config.model.vocab_size
  m = config.model.vocab_multiple
  return -(-vocab.size // m) * m
