"""The causal LM's `eval.analyses` (run by --mode=eval): each named evaluation on held-out rows, from the
primitives in analysis.py.

  positions  the per-position NLL curve (bins, mean, curve)
  cipher     the same curve on enciphered rows, and its difference from the plain one
  probe      linear and MLP probes from the hidden state of the ciphertext to the plaintext identity
  symbolic   exact match of the in-context copy / lookup task, on seen and held-out symbols
  ariel      AriEL volume coding around this LM: given by the caller (decode/ariel.py lm_evaluation), since
             models/ does not import decode/

Legend: N rows, T length.
"""
from typing import Any, Callable, Mapping

import jax
import numpy as np

from models.causal_lm import analysis

ANALYSES = ("positions", "cipher", "probe", "symbolic", "ariel")


def check_analyses(names: tuple[str, ...], corpus: str, embedding: str) -> None:
  """ValueError (one line) for an unknown evaluation or one the data or model cannot run."""
  bad = [a for a in names if a not in ANALYSES]
  if bad:
    raise ValueError(f"eval.analyses has {bad}; choose from {list(ANALYSES)}")
  if "symbolic" in names and not corpus.startswith("synthetic:symbolic"):
    raise ValueError("eval.analyses 'symbolic' scores the in-context symbol task: set data.corpus="
                     "synthetic:symbolic")
  if "ariel" in names and not corpus.startswith("synthetic:house_questions"):
    raise ValueError("eval.analyses 'ariel' codes sentences of a finite language: set data.corpus="
                     "synthetic:house_questions")
  if "ariel" in names and embedding != "learned":
    raise ValueError("eval.analyses 'ariel' steps the LM through its KV cache: it needs model.embedding='learned'")


def held_out_rows(data: Any, batch_size: int, n: int, seed: int) -> dict[str, np.ndarray]:
  """The first `n` rows of a data source's eval iterator, as [N, T] arrays."""
  it = data.eval_iterator(global_batch=batch_size, seed=seed)
  rows = []
  while sum(len(r["tokens"]) for r in rows) < n:
    rows.append(next(it))
  return {k: np.concatenate([r[k] for r in rows])[:n] for k in rows[0]}


def run_analyses(names: tuple[str, ...], apply_fn: Callable, params: Any, batch: Mapping[str, np.ndarray], *,
                 vocab_size: int, first_normal_id: int, embed_keys: bool, num_keys: int, seed: int,
                 symbolic_rows: Callable[[str], Mapping[str, np.ndarray]] | None = None,
                 extra: Mapping[str, Callable[[Any], dict]] | None = None) -> dict:
  """{name: result} for each of `names` on `batch` (tokens, segment_ids, positions [N, T]). Keys derive from
  `seed` (the fixed evaluation key seed + 3, the cipher seed + 4); `symbolic_rows(split)` gives the symbol task's
  rows for "train" / "eval" symbols; `extra[name](params)` runs the evaluations this package cannot (AriEL)."""
  from data.cipher import encipher
  key = jax.random.PRNGKey(seed + 3)
  plain = batch["tokens"]
  ciphered = encipher(plain, vocab_size, first_normal_id, seed=seed + 4)
  n = len(plain)
  out = {}

  def curve(tokens):
    nll, count = analysis.position_nll(apply_fn, params, tokens, batch["segment_ids"], batch["positions"],
                                       embed_keys=embed_keys, num_keys=num_keys, key=key)
    return {"bins": analysis.bin_means(nll, count), "mean": float(np.nansum(nll * count) / count.sum()),
            "curve": [None if np.isnan(x) else round(float(x), 4) for x in nll]}
  if "positions" in names:
    out["positions"] = curve(plain)
  if "cipher" in names:
    c = curve(ciphered)
    base = out.get("positions") or curve(plain)
    c["delta_mean"] = c["mean"] - base["mean"]
    c["delta_bins"] = {b: c["bins"][b] - base["bins"][b] for b in c["bins"]}
    out["cipher"] = c
  if "probe" in names:   # plaintext identity from the hidden state of the ciphertext
    half = n // 2
    h = analysis.hidden_states(apply_fn, params, ciphered, embed_keys=embed_keys, key=key)
    labels = plain - first_normal_id
    normal = (labels >= 0) & (batch["segment_ids"] > 0)
    k = vocab_size - first_normal_id
    test = labels[half:][normal[half:]]
    out["probe"] = {"majority_rate": float(np.bincount(test, minlength=k).max() / max(test.size, 1))}
    for kind in ("linear", "mlp"):
      acc, count = analysis.probe_accuracy(h[:half], labels[:half], h[half:], labels[half:], k, kind=kind,
                                           train_mask_NT=normal[:half], test_mask_NT=normal[half:])
      out["probe"][kind] = analysis.bin_means(np.nan_to_num(acc), count)
  if "symbolic" in names:
    out["symbolic"] = {}
    for split in ("train", "eval"):   # seen symbols / held-out symbols
      r = symbolic_rows(split)
      for task in ("copy", "lookup"):
        out["symbolic"][f"{task}_{split}_symbols"] = analysis.episode_exact_match(
            apply_fn, params, r["tokens"], r[task], r["episode"], embed_keys=embed_keys, num_keys=num_keys, key=key)
  for name, fn in (extra or {}).items():
    if name in names:
      out[name] = fn(params)
  return out
