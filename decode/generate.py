"""Autoregressive generation: one prefill, then a `lax.while_loop` of single-token steps over an explicit KV cache.

`apply_fn(variables, tokens_BT, cache=KVCache) -> (logits_BTV, KVCache)` is the model's decoding interface
(models/causal_lm). Prompts are right-padded with per-row lengths (ragged batches): each row continues from its
own length, stops at its EOS or after `max_new_tokens`, and never sees another row.
"""
from functools import partial
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

from data.sources import pad_rows
from decode.sampling import SamplerConfig, apply_chain, sample
from decode.watermark import WatermarkConfig, key_uniforms, watermark_sample
from models.layers.kv_cache import KVCache
from models.family import ModuleFn


@flax.struct.dataclass
class GenerationState:
  tokens: jax.Array      # [B, P + N] prompt followed by generated tokens, pad elsewhere
  lengths: jax.Array     # [B] tokens written so far in each row
  done: jax.Array        # [B] bool
  logits: jax.Array      # [B, V] next-token logits
  cache: KVCache
  key: jax.Array
  step: jax.Array        # int32 scalar


def prefill(apply_fn: Callable, params: Any, prompt_BP: jax.Array, prompt_lengths_B: jax.Array,
            cache: KVCache) -> tuple[jax.Array, KVCache]:
  """Runs the padded prompts through the model; returns each row's next-token logits [B, V] and the cache
  rewound to the real prompt lengths (pad entries are overwritten later)."""
  logits_BPV, cache = apply_fn({"params": params}, prompt_BP, cache=cache.rewind(jnp.zeros_like(prompt_lengths_B)))
  rows = jnp.arange(prompt_BP.shape[0])
  return logits_BPV[rows, prompt_lengths_B - 1], cache.rewind(prompt_lengths_B)


@partial(jax.jit, static_argnames=("apply_fn", "init_cache", "max_new_tokens", "sampler", "eos_id", "pad_id",
                                   "watermark"))
def generate(apply_fn: Callable, init_cache: Callable[[int, int], KVCache], params: Any, prompt_BP: jax.Array,
             prompt_lengths_B: jax.Array, key: jax.Array, *, max_new_tokens: int,
             sampler: SamplerConfig | None = None, eos_id: int | None = None,
             pad_id: int = 0, watermark: WatermarkConfig | None = None) -> tuple[jax.Array, jax.Array]:
  """Returns (tokens [B, P + max_new_tokens], lengths [B]); sampler=None is greedy.

  `init_cache(batch, max_len)` builds an empty cache (e.g. `CausalLm(cfg).init_cache`). The EOS token, when
  generated, is kept and ends its row. With `watermark`, tokens are drawn by the EXP watermark's key-derived
  Gumbel-max from the sampler chain's distribution (decode/watermark.py), each row at a random key shift.
  """
  B, P = prompt_BP.shape
  total = P + max_new_tokens
  logits, cache = prefill(apply_fn, params, prompt_BP, prompt_lengths_B, init_cache(B, total))
  tokens = jnp.full((B, total), pad_id, prompt_BP.dtype).at[:, :P].set(prompt_BP)
  tokens = jnp.where(jnp.arange(total)[None] < prompt_lengths_B[:, None], tokens, pad_id)
  rows = jnp.arange(B)
  key, shift_key = jax.random.split(key)
  shifts = jax.random.randint(shift_key, (B,), 0, watermark.n if watermark else 1)

  def draw(k, logits, generated):
    if watermark is None:
      return sample(k, logits, sampler)
    processed = apply_chain(logits, sampler) if sampler is not None else logits
    xi = key_uniforms(watermark.seed, (shifts + generated) % watermark.n, logits.shape[-1])
    return watermark_sample(processed, xi)

  def cond(s: GenerationState):
    return (s.step < max_new_tokens) & ~jnp.all(s.done)

  def body(s: GenerationState) -> GenerationState:
    key, sub = jax.random.split(s.key)
    tok = draw(sub, s.logits, s.lengths - prompt_lengths_B).astype(s.tokens.dtype)
    tok = jnp.where(s.done, pad_id, tok)
    tokens = s.tokens.at[rows, jnp.minimum(s.lengths, total - 1)].set(
        jnp.where(s.done, s.tokens[rows, jnp.minimum(s.lengths, total - 1)], tok))
    generated = s.lengths + 1 - prompt_lengths_B
    done = s.done | (generated >= max_new_tokens)
    if eos_id is not None:
      done |= tok == eos_id
    lengths = s.lengths + (~s.done).astype(s.lengths.dtype)
    logits, cache = apply_fn({"params": params}, tok[:, None], cache=s.cache.rewind(s.lengths))
    return GenerationState(tokens, lengths, s.done | done, logits[:, 0], cache, key, s.step + 1)

  state = GenerationState(tokens, prompt_lengths_B.astype(jnp.int32), jnp.zeros((B,), bool), logits, cache, key,
                          jnp.zeros((), jnp.int32))
  state = jax.lax.while_loop(cond, body, state)
  return state.tokens, state.lengths


def generate_token_ids(model: Any, params: Any, vocab: Any, prompts: list[str], *, max_new_tokens: int,
                       sampler: SamplerConfig | None = None, seed: int = 0,
                       mesh: jax.sharding.Mesh | None = None) -> list[list[int]]:
  """Each prompt's ids, prefixed with CLS/BOS, followed by its continuation (through SEP/EOS when one is drawn).

  With a mesh, inputs are replicated global arrays, so this also runs with several processes.
  """
  rows = [[vocab.cls_id] + vocab.encode(p) for p in prompts]
  return continue_ids(model, params, vocab, rows, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed,
                      mesh=mesh)


def continue_ids(model: Any, params: Any, vocab: Any, rows: list[list[int]], *, max_new_tokens: int,
                 sampler: SamplerConfig | None = None, seed: int = 0,
                 mesh: jax.sharding.Mesh | None = None) -> list[list[int]]:
  """`generate_token_ids` from token rows (BOS included) instead of texts."""
  import numpy as np
  arr, real = pad_rows(rows, max(len(r) for r in rows), vocab.pad_id)
  lengths = real.sum(1).astype(np.int32)
  if mesh is not None:
    replicated = jax.sharding.NamedSharding(mesh, jax.P())
    arr, lengths = jax.device_put(arr, replicated), jax.device_put(lengths, replicated)
  toks, out_len = generate(ModuleFn(model), ModuleFn(model, "init_cache"), params, jnp.asarray(arr),
                           jnp.asarray(lengths), jax.random.PRNGKey(seed), max_new_tokens=max_new_tokens, sampler=sampler,
                           eos_id=vocab.sep_id, pad_id=vocab.pad_id)
  toks, out_len = np.asarray(jax.device_get(toks)), np.asarray(jax.device_get(out_len))
  return [[int(t) for t in toks[i, :out_len[i]]] for i in range(len(rows))]


def generate_texts(model: Any, params: Any, vocab: Any, prompts: list[str], *, max_new_tokens: int,
                   sampler: SamplerConfig | None = None, seed: int = 0,
                   mesh: jax.sharding.Mesh | None = None) -> list[str]:
  """Continues each prompt (prefixed with CLS/BOS) and returns prompt + continuation as text; stops at SEP/EOS."""
  ids = generate_token_ids(model, params, vocab, prompts, max_new_tokens=max_new_tokens, sampler=sampler,
                           seed=seed, mesh=mesh)
  return [vocab.decode(r[1:]) for r in ids]

