"""Exact output laws of the sequential, parallel and ADJUST samplers on a tiny base (spec §9: D1-D3), no sampling.

  python -m bench.joint_sampling_exact --vocab 3 --length 4 --k 4 --seed 0 [--train-adjust-steps 1500]
  python -m bench.joint_sampling_exact --base=table --fixture=copy --oracle-adjust

Bases: "table" is an exact tabular joint (the copy fixture of spec §9.1, or a Dirichlet(0.3) joint drawn with
--seed) whose conditionals are computed exactly; "mdlm" is a tiny MDLM (2 layers, d = 64, SUBS) trained for
--base-steps with the MDLM NELBO on samples of that joint, whose own sequential law is then the reference.
ADJUST: --oracle-adjust returns the base's exact conditionals at the new state (distance 0: the plumbing check
D1); otherwise (base "mdlm" only) the ADJUST layer of models/mdlm/adjust.py, trained for --train-adjust-steps on
windows of --trajectories of the base's own one-token-per-call trajectories (0 = untrained), as the ADJUST family
trains it (decode/trajectories.py, models/mdlm/adjust_objective.py). Laws are enumerated by decode/diffusion_exact.py
with the samplers' own position ranking. Prints TV and KL(P_seq || P) for K = 1..--k and ends with one line
`parallel_tv=... adjust_tv=... parallel_kl=... adjust_kl=...` at K = --k.
"""
import time

import numpy as np
from absl import app, flags

from bench import record
from bench.joint_sampling_models import table_sampler, train_adjust, train_mdlm

_VOCAB = flags.DEFINE_integer("vocab", 3, "Vocabulary size V (the mask id is V).")
_LENGTH = flags.DEFINE_integer("length", 4, "Sequence length L.")
_K = flags.DEFINE_integer("k", 4, "Tokens per base call for the final line (the table shows 1..k).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the Dirichlet joint, the training data and the inits.")
_BASE = flags.DEFINE_enum("base", "mdlm", ["table", "mdlm"], "Exact tabular conditionals or a trained tiny MDLM.")
_FIXTURE = flags.DEFINE_enum("fixture", "copy", ["copy", "dirichlet"], "The joint the base is or learns.")
_BASE_STEPS = flags.DEFINE_integer("base_steps", 1500, "MDLM training steps (base=mdlm).")
_TRAIN_ADJUST = flags.DEFINE_integer("train_adjust_steps", 0, "ADJUST training steps (0: untrained).")
_TRAJECTORIES = flags.DEFINE_integer("trajectories", 5000, "Base trajectories for ADJUST training.")
_ORACLE = flags.DEFINE_boolean("oracle_adjust", False, "ADJUST = the base's exact conditionals (distance 0).")


def _joint(V, L, fixture, seed):
  from decode import diffusion_exact as ex
  if fixture == "copy":
    return ex.copy_fixture(V, L)
  return np.random.default_rng(seed).dirichlet(np.full(V ** L, 0.3)).reshape((V,) * L)


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp

  from decode import diffusion_exact as ex
  V, L, K, seed = _VOCAB.value, _LENGTH.value, _K.value, _SEED.value
  if _BASE.value == "table" and not _ORACLE.value:
    raise SystemExit("--base=table has no hidden state for a learned ADJUST: use --oracle-adjust or --base=mdlm")
  t0 = time.time()
  P = _joint(V, L, _FIXTURE.value, seed)
  x0 = np.full(L, V)
  notes = []
  if _BASE.value == "table":
    table = ex.table_conditionals(P, V)
    base = table
    base_h = lambda x: (table(x), None)                                        # noqa: E731
    adjust = lambda x, h, logits: (table(x), None)                             # noqa: E731
  else:
    cfg, base_params, loss0, loss1 = train_mdlm(table_sampler(P), V, L, _BASE_STEPS.value, seed)
    notes.append(f"MDLM base: {_BASE_STEPS.value} steps, NELBO {loss0:.3f} -> {loss1:.3f} nats/token "
                 f"(the joint's entropy per token: {-(P[P > 0] * np.log(P[P > 0])).sum() / L:.3f})")
    model, params, first, last = train_adjust(cfg, base_params, V, L, _TRAIN_ADJUST.value, _TRAJECTORIES.value,
                                               seed)
    if last is not None:
      notes.append(f"ADJUST: {_TRAIN_ADJUST.value} steps on {_TRAJECTORIES.value} trajectories; KL {first['loss']:.4f}"
                   f" -> {last['loss']:.4f} (naive, the step-start logits: {last['naive_kl']:.4f}); top-1 agreement "
                   f"{last['top1_agreement']:.3f}")
    v = {"params": params}
    base_step = jax.jit(lambda x: model.apply(v, x, method="base_step"))
    adjust_step = jax.jit(lambda x, h: model.apply(v, x, h, method="adjust_step"))

    def base_h(x):
      logits, h = base_step(jnp.asarray(x)[None])
      return np.asarray(logits[0], np.float64), h

    def base(x):
      return base_h(x)[0]

    if _ORACLE.value:
      adjust = lambda x, h, logits: base_h(x)                                  # noqa: E731
    else:
      def adjust(x, h, logits):
        del logits
        lg, h = adjust_step(jnp.asarray(x)[None], h)
        return np.asarray(lg[0], np.float64), h
  seq = ex.unmask_law(base, x0, mask_id=V, vocab=V, k=1)
  ref = ex.table_law(P, x0, V)
  print(f"V = {V}, L = {L}, fixture {_FIXTURE.value}, base {_BASE.value}, seed {seed}; TV(P_seq, joint) = "
        f"{ex.tv(seq, ref):.4f}")
  for n in notes:
    print(n)
  print("\n| K | TV(P_par, P_seq) | TV(P_adj, P_seq) | KL(P_seq ‖ P_par) | KL(P_seq ‖ P_adj) | adj / par TV |")
  print("|---|---|---|---|---|---|")
  row, laws = {}, {}
  for k in range(1, K + 1):
    par = ex.unmask_law(base, x0, mask_id=V, vocab=V, k=k)
    adj = ex.adjust_law(base_h, adjust, x0, mask_id=V, vocab=V, k=k)
    row = dict(parallel_tv=ex.tv(par, seq), adjust_tv=ex.tv(adj, seq), parallel_kl=ex.kl(seq, par),
               adjust_kl=ex.kl(seq, adj))
    ratio = row["adjust_tv"] / row["parallel_tv"] if row["parallel_tv"] > 0 else float("nan")
    print(f"| {k} | {row['parallel_tv']:.4f} | {row['adjust_tv']:.2e} | {row['parallel_kl']:.4f} | "
          f"{row['adjust_kl']:.2e} | {ratio:.3f} |")
    laws[k] = row
  print(f"\n({time.time() - t0:.0f}s)")
  record.write("joint_sampling_exact", {"vocab": V, "length": L, "k": K, "seed": seed, "base": _BASE.value,
                                        "fixture": _FIXTURE.value, "oracle_adjust": _ORACLE.value,
                                        "tv_sequential_vs_joint": ex.tv(seq, ref), "notes": notes, "by_k": laws})
  print(" ".join(f"{k}={v:.6g}" for k, v in row.items()))


def _underscored(argv):
  """--train-adjust-steps=S and --oracle-adjust (the issue's spelling) as absl's --train_adjust_steps / ..."""
  out = []
  for a in argv:
    if a.startswith("--"):
      name, eq, value = a[2:].partition("=")
      a = "--" + name.replace("-", "_") + eq + value
    out.append(a)
  return out


if __name__ == "__main__":
  import sys
  sys.argv = _underscored(sys.argv)
  app.run(main)
