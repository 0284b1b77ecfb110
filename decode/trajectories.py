"""The trajectory writer: the base MDLM's own one-token-per-call samples with the order of their reveals, the
training data of ADJUST (spec §5.1: sequential, lowest entropy first, temperature 1, full length).

Legend: N trajectories, B batch, L length.
"""
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from decode.diffusion import unmask_sample
from decode.sampling import SamplerConfig


def sequential_trajectories(denoise_fn: Callable[[jax.Array, jax.Array], jax.Array], start_L: np.ndarray,
                            segment_ids_L: np.ndarray, num: int, batch: int, seed: int, *, mask_id: int,
                            banned_ids: tuple[int, ...] = (), vocab_limit: int | None = None,
                            sampler: SamplerConfig | None = SamplerConfig(),
                            rule: str = "entropy") -> dict[str, np.ndarray]:
  """`num` trajectories from the row `start_L` (mask ids where the base generates): tokens, order (the call at
  which each position was revealed; -1 = given) and segment_ids, each [N, L] int32. denoise_fn(x, segments).
  `rule` ranks the positions (decode.diffusion.RULES; ADJUST samples with the rule it was trained on)."""
  seg_BL = jnp.broadcast_to(jnp.asarray(segment_ids_L, jnp.int32), (batch, len(start_L)))
  run = jax.jit(lambda x, r: unmask_sample(lambda y: denoise_fn(y, seg_BL), x, r, mask_id=mask_id, k=1,
                                           rule=rule, sampler=sampler, banned_ids=banned_ids,
                                           vocab_limit=vocab_limit, return_order=True))
  x_BL = jnp.broadcast_to(jnp.asarray(start_L, jnp.int32), (batch, len(start_L)))
  tokens, orders = [], []
  with tqdm.tqdm(total=num, desc="trajectories", unit="traj", dynamic_ncols=True, mininterval=2.0) as bar:
    for b in range(-(-num // batch)):   # one batch of L model calls per step of the bar (ETA from the first)
      out, _, order = jax.device_get(run(x_BL, jax.random.fold_in(jax.random.PRNGKey(seed), b)))
      tokens.append(out)
      orders.append(order)
      bar.update(min(batch, num - b * batch))
  tokens, orders = np.concatenate(tokens)[:num], np.concatenate(orders)[:num]
  return {"tokens": tokens.astype(np.int32), "order": orders.astype(np.int32),
          "segment_ids": np.broadcast_to(np.asarray(segment_ids_L, np.int32), tokens.shape).copy()}


def save_trajectories(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Atomic write (a temporary file renamed into place)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
