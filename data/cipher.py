"""Substitution ciphers: each sequence's normal ids permuted by its own uniformly random permutation (special ids,
below `first_id`, are left alone), the key a pure function of (seed, sequence index). Legend: B rows, T length."""
import numpy as np


def cipher_keys(num_rows: int, num_ids: int, first_id: int, seed: int) -> np.ndarray:
  """[B, num_ids] int32: row b maps id i to keys[b, i]; ids < first_id map to themselves."""
  keys = np.tile(np.arange(num_ids, dtype=np.int32), (num_rows, 1))
  for b in range(num_rows):
    keys[b, first_id:] = first_id + np.random.default_rng([seed, b, 11]).permutation(num_ids - first_id)
  return keys


def encipher(tokens_BT: np.ndarray, num_ids: int, first_id: int, seed: int) -> np.ndarray:
  """Each row under an independent random permutation of the ids [first_id, num_ids)."""
  tokens_BT = np.asarray(tokens_BT)
  if tokens_BT.size and (tokens_BT.min() < 0 or tokens_BT.max() >= num_ids):
    raise ValueError(f"encipher: ids must lie in [0, {num_ids})")
  keys = cipher_keys(tokens_BT.shape[0], num_ids, first_id, seed)
  return np.take_along_axis(keys, tokens_BT.astype(np.int64), axis=1).astype(tokens_BT.dtype)
