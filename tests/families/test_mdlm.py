"""The masked diffusion LM (models/mdlm/): SUBS, the NELBO against brute force, training in the generic trainer,
and the samplers on a real (tiny, random) network against exact enumeration."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decode import diffusion_exact as ex
from decode.diffusion import ancestral_sample, unmask_sample
from models.mdlm import MaskedDiffusionLM, MdlmObjective
from models.modernbert import ModernBertConfig

MASK, LIMIT = 7, 5            # tokens 0..4; ids 5, 6 pad the table; 7 is the mask id
CFG = ModernBertConfig(vocab_size=8, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                       global_attn_every_n_layers=2, local_attention=4, initializer_range=0.5)


@pytest.fixture(scope="module")
def net():
  model = MaskedDiffusionLM(CFG, mask_id=MASK, vocab_limit=LIMIT)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.int32))["params"]
  apply = jax.jit(lambda x: model.apply({"params": params}, x))
  return model, params, apply


def test_subs_parameterisation(net):
  _, _, apply = net
  x = jnp.asarray([[MASK, 2, MASK, 4]])
  logp = jax.nn.log_softmax(apply(x), -1)
  assert np.all(np.isneginf(np.asarray(logp)[0, :, MASK]))                 # the mask is never predicted
  assert np.all(np.isneginf(np.asarray(logp)[0, :, LIMIT:]))               # nor the padded ids
  np.testing.assert_allclose(np.asarray(logp)[0, 1, 2], 0.0, atol=1e-6)   # unmasked tokens copied through
  np.testing.assert_allclose(np.asarray(logp)[0, 3, 4], 0.0, atol=1e-6)
  p = np.exp(np.asarray(logp)[0, [0, 2], :LIMIT])
  assert np.all(p > 1e-3) and p.max() < 0.99                               # free, non-trivial at masked slots


def test_packed_documents_equal_separate_runs(net):
  model, params, _ = net
  a, b = np.array([1, MASK, 3, 0, MASK]), np.array([MASK, 2, 2, MASK, 4, 1])
  packed = np.full((1, 14), 0, np.int32)
  packed[0, :5], packed[0, 5:11] = a, b
  seg = np.zeros((1, 14), np.int32)
  seg[0, :5], seg[0, 5:11] = 1, 2
  pos = np.zeros((1, 14), np.int32)
  pos[0, :5], pos[0, 5:11] = np.arange(5), np.arange(6)
  apply = jax.jit(lambda t, s, p: model.apply({"params": params}, t, s, p))   # one shape, one compilation
  out = np.asarray(apply(packed, seg, pos))
  for doc, sl in ((a, slice(0, 5)), (b, slice(5, 11))):
    n = len(doc)   # the document alone at the start of a row, the rest padding (segment 0)
    row = np.zeros((1, 14), np.int32)
    row[0, :n] = doc
    ref = np.asarray(apply(row, (np.arange(14) < n).astype(np.int32)[None], np.arange(14, dtype=np.int32)[None]))
    masked = doc == MASK
    np.testing.assert_allclose(out[0, sl][masked], ref[0, :n][masked], atol=1e-5, rtol=0)
  leaky = np.asarray(apply(packed, (seg > 0).astype(np.int32), pos))
  assert np.max(np.abs(leaky[0, 5, :LIMIT] - out[0, 5, :LIMIT])) > 1e-3   # the oracle can fail: no segments, leakage


def _brute_force_nelbo(apply, x):
  """NELBO per token of x: sum over masked subsets S of Beta(|S|, L - |S| + 1) sum_{l in S} CE_l(x_S masked), / L
  (the integral over t of t^|S| (1-t)^(L-|S|) / t: alpha_t = 1 - t, weight 1/t)."""
  L = len(x)
  total = 0.0
  for n in range(1, L + 1):
    for S in itertools.combinations(range(L), n):
      z = np.array(x)
      z[list(S)] = MASK
      logp = np.asarray(jax.nn.log_softmax(apply(jnp.asarray(z)[None]), -1), np.float64)[0]
      beta = math.factorial(n - 1) * math.factorial(L - n) / math.factorial(L)
      total += beta * sum(-logp[j, x[j]] for j in S)
  return total / L


def _objective_estimates(model, params, x, weighting, reps=8, rows=4096, cls=MdlmObjective):
  objective = cls(mask_id=MASK, special_ids=(), loss_weighting=weighting)
  batch = {"tokens": jnp.broadcast_to(jnp.asarray(x), (rows, len(x))),
           "segment_ids": jnp.ones((rows, len(x)), jnp.int32),
           "positions": jnp.broadcast_to(jnp.arange(len(x)), (rows, len(x)))}

  @jax.jit
  def estimate(rng):
    b = objective.prepare(batch, rng)
    return objective.loss(model.apply, params, b, rng)[0]
  return np.array([float(estimate(jax.random.PRNGKey(r))) for r in range(reps)])


def test_nelbo_equals_brute_force(net):
  model, params, apply = net
  x = [1, 3, 0]
  exact = _brute_force_nelbo(apply, x)
  est = _objective_estimates(model, params, x, "nelbo")
  sem = est.std(ddof=1) / len(est) ** 0.5
  assert sem < 0.02 * exact
  assert abs(est.mean() - exact) < 4 * sem + 0.005 * exact, (est.mean(), exact, sem)   # min_t = 1e-3 bias
  # Injected bug: the 1/t weight dropped (masked CE per real token) must move the estimate far away.
  class NoTimeWeight(MdlmObjective):
    def prepare(self, batch, rng, *, step=None):
      b = super().prepare(batch, rng, step=step)
      m = (b["inputs"] == MASK).astype(jnp.float32)
      return {**b, "weights": m / b["count"].sum()}
  wrong = _objective_estimates(model, params, x, "nelbo", reps=2, cls=NoTimeWeight).mean()
  assert abs(wrong - exact) > 0.3 * exact, (wrong, exact)


def test_objective_masks_only_real_tokens_and_weights_add_up():
  objective = MdlmObjective(mask_id=MASK, special_ids=(0,))
  tokens = jnp.asarray([[0, 1, 2, 3, 4, 6, 6, 6]] * 64)
  segments = jnp.asarray([[1, 1, 1, 1, 1, 0, 0, 0]] * 64)
  b = objective.prepare({"tokens": tokens, "segment_ids": segments,
                         "positions": jnp.broadcast_to(jnp.arange(8), (64, 8))}, jax.random.PRNGKey(0))
  masked = np.asarray(b["inputs"]) == MASK
  assert not masked[:, 0].any() and not masked[:, 5:].any() and masked[:, 1:5].any()
  t = np.sort((np.asarray(b["weights"]) * 4 * 64 / np.maximum(masked, 1e-9))[masked].round(6))
  # stratified times: one per row, spread over [min_t, 1]; weight = 1/t / (real tokens in the batch)
  inv = 1.0 / np.unique(t)
  assert inv.min() > 1e-3 and inv.max() <= 1.0 + 1e-6 and len(np.unique(t)) > 32
  np.testing.assert_allclose(np.asarray(b["accuracy_weights"]).sum(), 1.0, rtol=1e-6)


def test_samplers_on_a_real_network_match_enumeration(net):
  _, _, apply = net
  N = 20_000
  x0 = np.array([MASK, 2, MASK, MASK])

  def base_np(x):
    return np.asarray(apply(jnp.asarray(x)[None])[0], np.float64)

  def draws(fn):
    return np.asarray(jax.jit(fn)(jnp.broadcast_to(jnp.asarray(x0, jnp.int32), (N, 4)), jax.random.PRNGKey(1))[0])

  from tests.decode.test_diffusion_samplers import check_law
  seq = ex.unmask_law(base_np, x0, mask_id=MASK, vocab=LIMIT, k=1)
  par = ex.unmask_law(base_np, x0, mask_id=MASK, vocab=LIMIT, k=3)
  check_law(draws(lambda x, r: unmask_sample(apply, x, r, mask_id=MASK, vocab_limit=LIMIT)), seq, par)
  check_law(draws(lambda x, r: unmask_sample(apply, x, r, mask_id=MASK, vocab_limit=LIMIT, k=3)), par, seq)
  anc = ex.ancestral_law(base_np, x0, mask_id=MASK, vocab=LIMIT, num_steps=4)
  check_law(draws(lambda x, r: ancestral_sample(apply, x, r, mask_id=MASK, vocab_limit=LIMIT, num_steps=4,
                                                cache=True)), anc, seq)


@pytest.fixture(scope="module")
def tiny_mdlm_run(tmp_path_factory):
  """configs/mdlm.py:tiny trained for 40 steps at lr 3e-3: (config, workdir, final eval metrics)."""
  from configs import mdlm
  from train.loop import train
  c = mdlm.get_config("tiny")
  c.unlock()
  c.train.num_steps, c.train.eval_every, c.train.checkpoint_every, c.optim.lr = 40, 40, 40, 3e-3
  c.lock()
  workdir = str(tmp_path_factory.mktemp("mdlm_tiny"))
  return c, workdir, train(c, workdir)


def test_trains_in_the_generic_trainer_and_decodes(tiny_mdlm_run):
  from tests.helpers import train_losses
  from train.restore import load_trained
  c, workdir, final = tiny_mdlm_run
  losses = train_losses(workdir)
  assert losses[2] > math.log(256) - 0.5                  # NELBO starts near log V (uniform over bytes)
  assert final["loss"] < losses[2] - 1.0                   # and falls within 40 steps
  exp, step, params = load_trained(c, workdir)
  (text,) = exp.family.decode(params, ["def [MASK][MASK]():"])
  assert step == 40 and text.startswith("def ") and text.endswith("():") and "[MASK]" not in text
  (cont,) = exp.family.decode(params, ["import"])
  assert cont.startswith("import") and len(cont.encode()) > len("import")
