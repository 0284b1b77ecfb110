"""The thought rollout of CoT2 (Gozeten et al. 2025 §4): the prompt fills a KV cache, then each of S steps
reads the last logits, chooses a mixture over the vocabulary and feeds it back as ONE new position whose input is
that mixture of the tied embedding rows (models/causal_lm: token_weights_BTV, alpha @ W_E).

A discrete chain of thought is the special case of one-hot mixtures. The S steps are a `lax.scan` over an explicit
cache pytree; the initialisation trace (params None: Flax's bound module cannot enter a JAX transform) runs the
same steps unrolled.
Legend: B rows, P prompt length, S thought steps, V vocabulary.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp

# choose(t, logits_BV, key) -> (weights_BV, aux): the mixture fed at step t (and any per-step values to keep).
Choose = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, Any]]


def rollout(apply_fn: Callable[..., Any], params: Any, prompt_BP: jax.Array, num_steps: int, choose: Choose,
            rng: jax.Array, *, deterministic: bool = True) -> tuple[jax.Array, jax.Array, Any]:
  """-> (step_logits [S, B, V]: the logits each mixture was chosen from, final_logits [B, V]: after the last
  fed position, aux stacked over steps). With deterministic=False every call gets its own dropout key."""
  B, P = prompt_BP.shape
  variables = {"params": params}
  cache = apply_fn(variables, B, P + num_steps, method="init_cache")
  rng, key = jax.random.split(rng)
  logits, cache = apply_fn(variables, prompt_BP, cache=cache, deterministic=deterministic, rngs={"dropout": key})

  def step(carry, xs):
    cache, last_BV = carry
    t, key = xs
    k_choose, k_drop = jax.random.split(key)
    weights_BV, aux = choose(t, last_BV, k_choose)
    logits, cache = apply_fn(variables, None, cache=cache, token_weights_BTV=weights_BV[:, None],
                             deterministic=deterministic, rngs={"dropout": k_drop})
    return (cache, logits[:, -1]), (last_BV, aux)

  carry = (cache, logits[:, -1])
  xs = (jnp.arange(num_steps), jax.random.split(rng, num_steps))
  if params is None:   # initialisation: unrolled
    outs = []
    for t in range(num_steps):
      carry, out = step(carry, jax.tree.map(lambda x: x[t], xs))
      outs.append(out)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *outs) if outs else (jnp.zeros((0,) + carry[1].shape), None)
  else:
    carry, stacked = jax.lax.scan(step, carry, xs)
  step_logits, aux = stacked
  return step_logits, carry[1], aux


def full_forward(apply_fn: Callable[..., Any], params: Any, prompt_BP: jax.Array,
                 weights_BSV: jax.Array) -> jax.Array:
  """The uncached reference: ONE forward pass over [prompt; mixtures] -> logits [B, P + S, V] (the logits at
  positions P-1 .. P+S-1 are the rollout's step and final logits for the same mixtures)."""
  B, P = prompt_BP.shape
  V = weights_BSV.shape[-1]
  prompt_weights = jax.nn.one_hot(prompt_BP, V, dtype=jnp.float32)
  return apply_fn({"params": params}, None, token_weights_BTV=jnp.concatenate([prompt_weights, weights_BSV], 1))
