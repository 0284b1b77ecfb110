"""CoT2's text-level decoding (`--mode=decode`): an MNNS prompt -> the thoughts and the answer, with the rollout
jitted once per (model, steps, method) and the parameters as an argument (a second call compiles nothing).

Discrete: the greedy trace; continuous: each thought's three heaviest tokens (the model's own softmax fed back).
"""
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data.mnns import ARROW, BOS
from models.cot2.objective import greedy, self_fed
from models.cot2.rollout import rollout
from models.family import as_value


@functools.lru_cache(maxsize=None)
def rollout_program(apply_fn: Callable[..., Any], num_steps: int, method: str):
  """(params, prompt [B, P]) -> rollout's (step_logits, final_logits, aux), jitted once."""
  choose = greedy if method == "discrete" else self_fed
  return jax.jit(lambda params, prompt: rollout(apply_fn, params, prompt, num_steps, choose, jax.random.PRNGKey(0)))


def prompt_ids(vocab, task, method: str, text: str) -> list[int]:
  """"D2 D7 D3 D2" (or with <BOS>) -> the rollout's prompt ids; a malformed prompt: ValueError (one line)."""
  ids = [i for i in vocab.encode(text) if i not in (BOS, ARROW)]
  if len(ids) != task.num_digits or not all(6 + task.lo <= i <= 6 + task.hi for i in ids):
    raise ValueError(f"prompt {text!r}: give {task.num_digits} digit tokens D{task.lo}..D{task.hi}, e.g. "
                     f"'{' '.join('D2' for _ in range(task.num_digits))}'")
  return [BOS] + ids + ([ARROW] if method == "discrete" else [])


def cot2_texts(apply_fn: Callable[..., Any], params: Any, vocab, task, method: str,
               prompts: Sequence[str]) -> list[str]:
  """"D2 D7 D3 D2" (or with <BOS>) -> "<prompt> thought ... => answer"; a malformed prompt: ValueError (one line)."""
  run = rollout_program(as_value(apply_fn), task.num_digits - 1, method)
  out = []
  for p in prompts:
    prompt = prompt_ids(vocab, task, method, p)
    step_logits, final, _ = run(params, jnp.array([prompt], jnp.int32))
    thoughts = []
    for t in range(1, task.num_digits):   # the mixture fed at step t-1 was read from step_logits[t-1]
      q = np.asarray(jax.nn.softmax(step_logits[t - 1, 0]))
      if method == "discrete":
        thoughts.append(vocab.tokens[int(q.argmax())])
      else:
        top = np.argsort(-q)[:3]
        thoughts.append("[" + " ".join(f"{vocab.tokens[i]}:{q[i]:.2f}" for i in top) + "]")
    out.append(f"{vocab.decode(prompt)} {' '.join(thoughts)} => {vocab.tokens[int(np.argmax(final[0]))]}")
  return out
