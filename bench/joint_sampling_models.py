"""The tiny MDLM and ADJUST trainers the joint-sampling benchmarks share (no flags: importable)."""
import numpy as np


def table_sampler(P):
  """rng, batch -> rows [B, L] drawn from the tabular joint P."""
  import jax
  import jax.numpy as jnp
  V, L = P.shape[0], P.ndim
  probs = jnp.asarray(P.reshape(-1))
  seqs = jnp.asarray(np.array(np.unravel_index(np.arange(V ** L), (V,) * L)).T, jnp.int32)
  return lambda rng, B: seqs[jax.random.choice(rng, V ** L, (B,), p=probs)]


def train_mdlm(sample_rows, V, L, steps, seed, hidden=64, layers=2, batch=256, lr=3e-3):
  """A tiny MDLM (SUBS, mask id V) trained with the NELBO on rows from sample_rows(rng, B). Returns (config,
  params, mean NELBO of the first 50 steps, of the last 100)."""
  import jax
  import jax.numpy as jnp
  import optax

  from models.mdlm import MaskedDiffusionLM, MdlmObjective
  from models.modernbert import ModernBertConfig
  cfg = ModernBertConfig(vocab_size=V + 1, hidden_size=hidden, num_layers=layers, num_heads=4,
                         intermediate_size=2 * hidden, global_attn_every_n_layers=1)
  model = MaskedDiffusionLM(cfg, mask_id=V, vocab_limit=V)
  objective = MdlmObjective(mask_id=V, special_ids=())
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, L), jnp.int32))["params"]
  warmup = min(100, max(steps // 4, 1))
  tx = optax.adamw(optax.warmup_cosine_decay_schedule(lr / 10, lr, warmup, max(steps, warmup + 1), lr / 10),
                   weight_decay=0.0)
  opt = tx.init(params)
  B = batch

  @jax.jit
  def step(params, opt, rng):
    r_data, r_prep = jax.random.split(rng)
    tokens = sample_rows(r_data, B)
    batch = {"tokens": tokens, "segment_ids": jnp.ones_like(tokens), "positions": jnp.broadcast_to(jnp.arange(L),
                                                                                                      (B, L))}
    b = objective.prepare(batch, r_prep)
    loss, g = jax.value_and_grad(lambda p: objective.loss(model.apply, p, b, r_prep)[0])(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt, loss

  rng = jax.random.PRNGKey(seed + 1)
  losses = []
  for i in range(steps):
    params, opt, loss = step(params, opt, jax.random.fold_in(rng, i))
    losses.append(float(loss))
  return cfg, params, float(np.mean(losses[:50])), float(np.mean(losses[-100:]))


def train_adjust(cfg, base_params, V, L, steps, num_traj, seed, batch=256):
  import jax
  import jax.numpy as jnp
  import optax

  from decode.trajectories import sequential_trajectories
  from models.mdlm.adjust import AdjustConfig, AdjustedMdlm
  from models.mdlm.adjust_objective import AdjustObjective
  model = AdjustedMdlm(cfg, mask_id=V, vocab_limit=V,
                       adjust_cfg=AdjustConfig(num_heads=4, intermediate_size=2 * cfg.hidden_size))
  params = model.init(jax.random.PRNGKey(seed + 2), jnp.zeros((1, L), jnp.int32))["params"]
  params = {**params, **base_params}
  denoise = lambda x, s: model.apply({"params": params}, x, s, method="base_step")[0]   # noqa: E731
  traj = sequential_trajectories(denoise, np.full(L, V, np.int32), np.ones(L, np.int32), num_traj, 500, seed + 3,
                                 mask_id=V, vocab_limit=V)
  objective = AdjustObjective(mask_id=V, max_depth=3)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(optax.warmup_cosine_decay_schedule(
      1e-4, 2e-3, 50, max(steps, 51), 2e-4), weight_decay=0.0))
  adjust = params["adjust"]
  opt = tx.init(adjust)
  data = {k: jnp.asarray(v) for k, v in traj.items()}
  B = batch

  @jax.jit
  def step(adjust, opt, rng):
    r_rows, r_prep = jax.random.split(rng)
    rows = jax.random.randint(r_rows, (B,), 0, num_traj)
    batch = {"tokens": data["tokens"][rows], "order": data["order"][rows], "segment_ids": data["segment_ids"][rows],
             "positions": jnp.broadcast_to(jnp.arange(L), (B, L))}
    b = objective.prepare(batch, r_prep)
    (loss, m), g = jax.value_and_grad(lambda a: objective.loss(model.apply, {**params, "adjust": a}, b, r_prep),
                                      has_aux=True)(adjust)
    u, opt = tx.update(g, opt, adjust)
    return optax.apply_updates(adjust, u), opt, m

  rng = jax.random.PRNGKey(seed + 4)
  first = last = None
  for i in range(steps):
    adjust, opt, m = step(adjust, opt, jax.random.fold_in(rng, i))
    if i == 0:
      first = {k: float(v) for k, v in m.items()}
  if steps:
    last = {k: float(v) for k, v in m.items()}
  return model, {**params, "adjust": adjust}, first, last
