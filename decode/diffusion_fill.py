"""Text in, text out for masked diffusion LMs: fill each prompt's "[MASK]"s, or continue a prompt without any.

Each sampler is jitted once per (model, settings) with the parameters as an argument (`sampler_program`,
`adjust_program`): a second call with the same shapes traces and compiles nothing.
Legend: B batch (prompts), L data.seq_len.
"""
import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data.sources import framed_rows, pad_rows
from data.vocab import Vocabulary
from decode.diffusion import RULES, adjust_sample, ancestral_sample, unmask_sample
from decode.sampling import SamplerConfig
from models.family import as_value

SAMPLERS = ("unmask", "ancestral")


@dataclasses.dataclass(frozen=True)
class DiffusionDecodeConfig:
  """`--mode=decode` settings of a masked diffusion LM (config.decode). sampler="unmask": `tokens_per_call`
  positions per model call ranked by `rule` (1 + "entropy" = the exact reference sampler), or every position at
  least `threshold` confident when threshold > 0, within blocks of `block_len` when > 0; sampler="ancestral":
  MDLM's ancestral sampler over `num_steps` (cached). A prompt without "[MASK]" is continued by
  `max_new_tokens` masks. temperature 0 is greedy; top_k 0 and top_p 1 are off."""
  sampler: str = "unmask"
  rule: str = "entropy"
  tokens_per_call: int = 1
  threshold: float = 0.0
  block_len: int = 0
  num_steps: int = 64
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  max_new_tokens: int = 16

  def __post_init__(self):
    if self.sampler not in SAMPLERS:
      raise ValueError(f"decode.sampler={self.sampler!r}: use one of {SAMPLERS}")
    if self.rule not in RULES:
      raise ValueError(f"decode.rule={self.rule!r}: use one of {RULES}")
    for key in ("tokens_per_call", "num_steps", "max_new_tokens"):
      if getattr(self, key) < 1:
        raise ValueError(f"decode.{key}={getattr(self, key)} must be >= 1")
    if not 0.0 <= self.threshold <= 1.0:
      raise ValueError(f"decode.threshold={self.threshold} must be in [0, 1] (0: a fixed tokens_per_call)")
    if self.temperature < 0 or self.block_len < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
      raise ValueError("decode.temperature, decode.block_len, decode.top_k must be >= 0 and decode.top_p in (0, 1]")

  @property
  def sampling(self) -> SamplerConfig | None:
    if self.temperature == 0:
      return None
    return SamplerConfig(temperature=self.temperature, top_k=self.top_k or None,
                         top_p=self.top_p if self.top_p < 1 else None)


def prompt_rows(vocab: Vocabulary, texts: Sequence[str], seq_len: int, max_new_tokens: int) -> list[list[int]]:
  """[CLS] text [SEP] with one mask id per "[MASK]"; a text without masks gets max_new_tokens of them before
  [SEP]. Too long for seq_len: ValueError naming the text."""
  marked = [t if "[MASK]" in t else t + "[MASK]" * max_new_tokens for t in texts]
  return framed_rows(vocab, marked, seq_len)


def diffusion_texts(apply_fn: Callable[..., jax.Array], params: Any, vocab: Vocabulary, texts: Sequence[str],
                    seq_len: int, cfg: DiffusionDecodeConfig, seed: int = 0) -> tuple[list[str], np.ndarray]:
  """The filled texts and the model calls each took."""
  rows = prompt_rows(vocab, texts, seq_len, cfg.max_new_tokens)
  tokens, segments = pad_rows(rows, seq_len, vocab.pad_id)
  run = sampler_program(as_value(apply_fn), cfg, vocab.mask_id, tuple(vocab.special_ids), vocab.size)
  out, calls = jax.device_get(run(params, jnp.asarray(tokens), jnp.asarray(segments), jax.random.PRNGKey(seed)))
  return [vocab.decode(np.asarray(out)[i, :len(r)]) for i, r in enumerate(rows)], np.asarray(calls)


@functools.lru_cache(maxsize=None)
def sampler_program(apply_fn: Callable[..., jax.Array], cfg: DiffusionDecodeConfig, mask_id: int,
                    banned_ids: tuple[int, ...], vocab_limit: int):
  """The configured sampler, jitted once: (params, tokens [B, L], segment_ids [B, L], rng) -> (tokens, calls)."""
  common = dict(mask_id=mask_id, sampler=cfg.sampling, banned_ids=banned_ids, vocab_limit=vocab_limit)

  def run(params, x, segments, rng):
    denoise = lambda y: apply_fn({"params": params}, y, segments)  # noqa: E731
    if cfg.sampler == "ancestral":
      return ancestral_sample(denoise, x, rng, num_steps=cfg.num_steps, cache=True, **common)
    return unmask_sample(denoise, x, rng, k=cfg.tokens_per_call, rule=cfg.rule, threshold=cfg.threshold or None,
                         block_len=cfg.block_len or None, **common)
  return jax.jit(run)


def adjust_texts(apply_fn: Callable[..., Any], params: Any, vocab: Vocabulary, texts: Sequence[str], seq_len: int,
                 k: int, sampler: SamplerConfig | None, seed: int = 0) -> list[str]:
  """ADJUST's sampler (decode.diffusion.adjust_sample) over framed prompts: the filled texts."""
  rows = framed_rows(vocab, list(texts), seq_len)
  tokens, segments = pad_rows(rows, seq_len, vocab.pad_id)
  run = adjust_program(as_value(apply_fn), k, sampler, vocab.mask_id, tuple(vocab.special_ids), vocab.size)
  out, _, _ = jax.device_get(run(params, jnp.asarray(tokens), jnp.asarray(segments), jax.random.PRNGKey(seed)))
  return [vocab.decode(np.asarray(out)[i, :len(r)]) for i, r in enumerate(rows)]


@functools.lru_cache(maxsize=None)
def adjust_program(apply_fn: Callable[..., Any], k: int, sampler: SamplerConfig | None, mask_id: int,
                   banned_ids: tuple[int, ...], vocab_limit: int):
  """adjust_sample jitted once: (params, tokens, segment_ids, rng) -> adjust_sample's outputs."""
  def run(params, x, segments, rng):
    v = {"params": params}
    base = lambda y: apply_fn(v, y, segments, method="base_step")                       # noqa: E731
    step = lambda y, h, logits: apply_fn(v, y, h, segments, method="adjust_step")       # noqa: E731
    return adjust_sample(base, step, x, rng, mask_id=mask_id, k=k, sampler=sampler, banned_ids=banned_ids,
                         vocab_limit=vocab_limit)
  return jax.jit(run)
