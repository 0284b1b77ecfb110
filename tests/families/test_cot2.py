"""CoT2 (Gozeten et al. 2025 §10): C1 generator, C2 targets, C3 CSFT loss, C4 continuous tokens (cached rollout
= uncached forward), C5 multi-token sampling, C6 Dirichlet exploration, C7 GRPO sanity (ratio exactly 1, zero-mean
advantages, equal rewards -> zero gradient, a toy bandit's sign). Oracles: brute-force MNNS solvers written here
independently of data/mnns.py, jax.scipy's Dirichlet density, scipy's relative entropy, Monte Carlo with 3-sigma
bounds and chi-square tests with wrong-rule controls."""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from data import mnns
from models.causal_lm import CausalLm, CausalLmConfig
from models.cot2 import exploration
from models.cot2.objective import CsftObjective, GrpoObjective, kl_to_target
from models.cot2.rollout import full_forward, rollout

TASK = mnns.Mnns()
V = TASK.vocab.size


def brute_answer(digits):
  """S - 2 max{sum of a subset <= S/2}: the subset-sum form of the answer (spec §1), over all subsets."""
  S = sum(digits)
  best = max(sum(c) for r in range(len(digits) + 1) for c in itertools.combinations(digits, r) if 2 * sum(c) <= S)
  return S - 2 * best


# C1 ------------------------------------------------------------------------------------------------------------
def test_c1_vocabulary_and_verbatim_lines():
  v = TASK.vocab
  assert v.size == 89 and len(TASK.digits_NL) == 6561
  assert [v.tokens[i] for i in (0, 1, 2, 3, 4, 5, 6, 15, 16, 52, 88)] == [
      "<PAD>", "<BOS>", "<EOS>", "->", "+", "-", "D0", "D9", "S-36", "S0", "S36"]
  lines = {tuple(r) for r in TASK.discrete_lines().tolist()}
  for text in ("<BOS> D1 D1 D1 D1 -> S1 S2 S1 S0 <EOS>", "<BOS> D2 D7 D3 D2 -> S2 S-5 S-2 S0 <EOS>"):
    assert tuple(v.encode(text)) in lines
    assert v.decode(v.encode(text)) == text
  assert TASK.prompts().shape == (6561, 5) and mnns.ARROW not in TASK.prompts()      # CSFT / GRPO prompt
  assert (TASK.prompts(arrow=True)[:, -1] == mnns.ARROW).all()                       # discrete evaluation prompt
  with pytest.raises(ValueError, match="not an MNNS token"):
    v.encode("D2 X7")


def test_c1_answers_and_traces_against_brute_force():
  answers = np.array([brute_answer(tuple(d)) for d in TASK.digits_NL.tolist()])
  np.testing.assert_array_equal(TASK.answers_N, answers)
  for digits, trace in zip(TASK.digits_NL.tolist(), TASK.traces_NL.tolist()):
    # the first sign pattern in itertools.product(["+", "-"]) order that reaches the answer
    for signs in itertools.product((1, -1), repeat=4):
      sums = list(itertools.accumulate(s * d for s, d in zip(signs, digits)))
      if sums[-1] == brute_answer(tuple(digits)):
        assert trace == sums
        break
  shares = np.bincount(TASK.answers_N) / len(TASK.answers_N)
  assert shares.argmax() == 1 and round(shares.max(), 3) == 0.373                   # majority S1, 37.3%


def test_c1_group_disjoint_split():
  train, val = TASK.split(42)
  assert (len(train), len(val)) == (5253, 1308)                                      # spec §1.3, random.seed(42)
  assert round(float((TASK.answers_N[val] == 1).mean()), 4) == 0.3425
  key = lambda i: tuple(sorted(TASK.digits_NL[i]))
  assert not {key(i) for i in train} & {key(i) for i in val}
  assert sorted(np.concatenate([train, val]).tolist()) == list(range(6561))
  assert set(TASK.split(43)[1].tolist()) != set(val.tolist())
  small = mnns.parse("mnns:3:1-5")
  assert small.vocab.size == 16 + 31 and len(small.digits_NL) == 125
  with pytest.raises(ValueError, match="mnns:L:lo-hi"):
    mnns.parse("mnns:4")


# C2 ------------------------------------------------------------------------------------------------------------
def test_c2_uniform_targets():
  u = TASK.uniform_targets()
  np.testing.assert_allclose(u.sum(-1), 1.0, atol=1e-6)
  i = int(np.where((TASK.digits_NL == [2, 2, 5, 1]).all(1))[0][0])
  s = lambda k: TASK.vocab.sum_id(k)
  np.testing.assert_allclose(u[i, 1, [s(4), s(0), s(-4)]], [0.25, 0.5, 0.25])       # spec §4.1 example (2, 2)
  for n in range(0, 6561, 97):
    reach = {0}
    for t, d in enumerate(TASK.digits_NL[n]):
      reach = {r + e for r in reach for e in (d, -d)}
      support = set(np.flatnonzero(u[n, t]).tolist())
      assert support == {int(s(r)) for r in reach} and len(support) <= 2 ** (t + 1)


def test_c2_beam_targets():
  one, full, uni = TASK.beam_targets(1), TASK.beam_targets(16), TASK.uniform_targets()
  differs = 0
  for n in range(0, 6561, 41):
    digits = TASK.digits_NL[n].tolist()
    paths = [(sum(s * d for s, d in zip(signs, digits)), signs) for signs in itertools.product((1, -1), repeat=4)]
    kept = sorted(p for p in paths if p[0] >= 0)                   # the official sort: (final, +-1 sign tuple)
    sums = np.array([list(itertools.accumulate(s * d for s, d in zip(signs, digits))) for _, signs in kept])
    best = sums[0]
    np.testing.assert_array_equal(one[n].argmax(-1), TASK.vocab.sum_id(best))
    assert (one[n].max(-1) == 1).all() and best[-1] == TASK.answers_N[n]
    hist = np.zeros((4, V))
    for row in sums:
      hist[np.arange(4), TASK.vocab.sum_id(row)] += 1
    np.testing.assert_allclose(full[n], hist / len(sums), atol=1e-6)   # M = all: non-negative-final paths
    differs += not np.allclose(full[n], uni[n], atol=1e-6)
  assert differs > 100                                             # not the uniform target in general


# C3 ------------------------------------------------------------------------------------------------------------
def test_c3_csft_kl():
  r = np.random.default_rng(0)
  logits = r.normal(size=(64, V)) * 3
  targets = TASK.uniform_targets()[r.choice(6561, 64), 2]
  kl = np.asarray(kl_to_target(jnp.asarray(targets), jnp.asarray(logits, jnp.float32)))
  ref = scipy.special.rel_entr(targets, scipy.special.softmax(logits, -1)).sum(-1)
  np.testing.assert_allclose(kl, ref, rtol=1e-4, atol=1e-6)         # up to the 1e-8 eps inside the log
  assert (kl >= 0).all()
  at_target = np.asarray(kl_to_target(jnp.asarray(targets), jnp.log(jnp.asarray(targets) + 1e-30)))
  assert np.abs(at_target).max() < 1e-6


# C4 ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
  cfg = CausalLmConfig(vocab_size=V, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                       max_position_embeddings=11, num_special=3, dropout_rate=0.1, pos_init_std=0.02)
  model = CausalLm(cfg)
  params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 5), jnp.int32))["params"])
  return model, params


def test_c4_soft_tokens_use_the_tied_table(tiny):
  model, params = tiny
  tokens = jnp.asarray(TASK.discrete_lines()[:4])
  by_id = model.apply({"params": params}, tokens)
  one_hot = model.apply({"params": params}, None, token_weights_BTV=jax.nn.one_hot(tokens, V))
  np.testing.assert_array_equal(np.asarray(one_hot), np.asarray(by_id))   # one-hot alpha: exactly the lookup
  alpha = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (4, 11, V)) * 2, -1)
  W = params["wte"]["embedding"]
  np.testing.assert_allclose(model.apply({"params": params}, None, token_weights_BTV=alpha),
                             model.apply({"params": params}, None, inputs_embeds_BTD=alpha @ W), atol=1e-5)
  h = model.apply({"params": params}, tokens, return_hidden=True)[1]
  np.testing.assert_allclose(by_id, h @ W.T, atol=1e-5)             # the same table produces the logits


def test_c4_cached_rollout_equals_uncached_forward(tiny):
  model, params = tiny
  prompt = jnp.asarray(TASK.prompts()[::700][:8])
  mixtures = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (3, 8, V)) * 3, -1)
  choose = lambda t, logits, key: (mixtures[t], None)
  step_logits, final, _ = jax.jit(lambda p: rollout(model.apply, p, prompt, 3, choose, jax.random.PRNGKey(0)))(params)
  full = full_forward(model.apply, params, prompt, jnp.moveaxis(mixtures, 0, 1))   # [B, 5 + 3, V]
  np.testing.assert_allclose(np.moveaxis(np.asarray(step_logits), 0, 1), full[:, 4:7], atol=1e-5)
  np.testing.assert_allclose(final, full[:, 7], atol=1e-5)
  wrong = full_forward(model.apply, params, prompt, jnp.moveaxis(mixtures[::-1], 0, 1))   # control: order matters
  assert np.abs(np.asarray(final) - np.asarray(wrong[:, 7])).max() > 1e-3


def test_c4_dropout_only_when_asked(tiny):
  model, params = tiny
  prompt = jnp.asarray(TASK.prompts()[:4])
  choose = lambda t, logits, key: (jax.nn.softmax(logits, -1), None)
  run = jax.jit(lambda det, seed: rollout(model.apply, params, prompt, 3, choose, jax.random.PRNGKey(seed),
                                          deterministic=det)[1], static_argnums=0)
  np.testing.assert_array_equal(run(True, 0), run(True, 1))
  assert np.abs(np.asarray(run(False, 0)) - np.asarray(run(False, 1))).max() > 1e-4


# C5 ------------------------------------------------------------------------------------------------------------
def test_c5_multi_token_sampling():
  logits = jax.random.normal(jax.random.PRNGKey(3), (1, V)) * 2
  p1 = exploration.mts_probs(logits, 1, False)
  tok = exploration.mts_sample(jax.random.PRNGKey(4), p1, 1)
  mix = exploration.mts_mixture(tok, V)
  np.testing.assert_array_equal(mix, jax.nn.one_hot(tok[:, 0], V))   # K = 1: a discrete token
  k, n = 3, 20_000
  probs = exploration.mts_probs(logits, k, True)                    # softmax(logits / K)
  keys = jax.random.split(jax.random.PRNGKey(5), n)
  toks = jax.vmap(lambda key: exploration.mts_sample(key, probs, k)[0])(keys)         # [n, K]
  mean = np.asarray(jax.vmap(lambda t: exploration.mts_mixture(t[None], V)[0])(toks)).mean(0)
  sigma = np.sqrt(np.asarray(probs[0]) * (1 - np.asarray(probs[0])) / (n * k))
  assert (np.abs(mean - np.asarray(probs[0])) <= 3 * sigma + 1e-9).mean() > 0.97       # E[mixture] = probs (MC)
  counts = np.bincount(np.asarray(toks).ravel(), minlength=V)
  for law, ok in ((probs[0], True), (jax.nn.softmax(logits[0]), False)):   # the tempered law, not the raw one
    e = np.asarray(law) * counts.sum()
    big = e > 5
    p = scipy.stats.chisquare(counts[big], e[big] * counts[big].sum() / e[big].sum()).pvalue
    assert (p > 1e-3) == ok
  lp = exploration.mts_logprob(probs, toks[:1])
  np.testing.assert_allclose(lp, np.log(np.asarray(probs[0])[np.asarray(toks[0])]).sum(), rtol=1e-6)


# C6 ------------------------------------------------------------------------------------------------------------
def test_c6_dirichlet_exploration():
  logits = jnp.concatenate([jnp.array([[4.0, 3.0, 2.5, 2.0, 1.0]]), jnp.full((1, V - 5), -6.0)], 1)
  alpha, support = exploration.dirichlet_alpha(logits, 1e-3, 1.0)
  p = np.asarray(jax.nn.softmax(logits[0]))
  U = p >= 1e-3
  np.testing.assert_array_equal(support[0], U)
  expect = np.where(U, np.maximum(p, 1e-3), 0) / np.where(U, np.maximum(p, 1e-3), 0).sum()
  np.testing.assert_allclose(alpha[0], expect, rtol=1e-6)
  n = 5_000
  w, log_w = jax.vmap(lambda k: exploration.dirichlet_sample(k, alpha, support))(jax.random.split(
      jax.random.PRNGKey(6), n))
  w = np.asarray(w[:, 0])
  assert (w[:, ~U] == 0).all() and np.allclose(w.sum(-1), 1, atol=1e-5) and (w >= 0).all()
  a0 = expect[U].sum()
  var = expect[U] * (1 - expect[U]) / (a0 + 1)
  assert (np.abs(w[:, U].mean(0) - expect[U]) <= 3 * np.sqrt(var / n)).all()       # E[w] = alpha / sum(alpha)
  lp = exploration.dirichlet_logprob(alpha, support, log_w[0])
  ref = jax.scipy.stats.dirichlet.logpdf(jnp.asarray(w[0, U] / w[0, U].sum()), jnp.asarray(expect[U]))
  np.testing.assert_allclose(lp[0], ref, rtol=1e-4)


# C7 ------------------------------------------------------------------------------------------------------------
def _grpo_batch(n=4):
  rows = mnns.rows(TASK, "csft", np.arange(0, 6561, 6561 // n)[:n]).arrays
  return {k: jnp.asarray(v) for k, v in rows.items()}


@pytest.mark.parametrize("kind", ["mts", pytest.param("dirichlet", marks=pytest.mark.slow)])
def test_c7_grpo_ratio_one_and_equal_rewards_give_zero_gradient(tiny, kind):
  model, params = tiny
  obj = GrpoObjective(4, kind, k=3, rollouts=16)
  batch = obj.prepare(_grpo_batch(8), jax.random.PRNGKey(0))
  f = jax.jit(jax.value_and_grad(lambda p, b: obj.loss(model.apply, p, b, jax.random.PRNGKey(7)), has_aux=True))
  (loss, m), g = f(params, batch)
  assert float(m["ratio"]) == 1.0                                   # old = current, deterministic forward
  assert float(m["reward"]) > 0                                     # some rollouts rewarded (fixed key)
  assert abs(float(loss)) < 1e-6                                    # zero-mean advantages: sum_r A_r rho = 0
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g)) > 0
  (_, m0), g0 = f(params, {**batch, "answer": jnp.full_like(batch["answer"], -1)})   # every reward 0
  assert float(m0["reward"]) == 0.0
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g0)) == 0.0


def test_c7_grpo_step_raises_the_rewarded_trajectories_log_probability(tiny):
  """The objective's own sign: at ratio 1 the GRPO loss gradient is -(1 / (R x L)) sum_r A_r grad log pi(tau_r),
  so a descent step raises the log-probability of the trajectories with positive advantage. The reference
  gradient is written here from the rollout's log-probabilities and the group advantages; the loss's gradient must
  point exactly against it (cosine -1). A flipped sign in the objective gives +1."""
  model, params = tiny
  R = 16
  obj = GrpoObjective(4, "mts", k=3, rollouts=R)
  batch = obj.prepare(_grpo_batch(8), jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(7)

  def advantage_weighted_logp(p):   # sum_r A_r (log pi of the thoughts + log pi of the final answer)
    prompt = jnp.repeat(batch["prompt"], R, axis=0)
    k_roll, k_final = jax.random.split(key)
    _, final, logp_SN = rollout(model.apply, p, prompt, 3, obj.choose(), k_roll)
    logq = jax.nn.log_softmax(final.astype(jnp.float32), axis=-1)
    token = jax.random.categorical(k_final, jax.lax.stop_gradient(logq), axis=-1)
    rewards = (token == jnp.repeat(batch["answer"], R)).astype(jnp.float32).reshape(-1, R)
    adv = jax.lax.stop_gradient(exploration.group_advantages(rewards)).reshape(-1)
    logp = logp_SN.sum(0) + jnp.take_along_axis(logq, token[:, None], axis=-1)[:, 0]
    return jnp.sum(jnp.repeat(batch["weights"], R) * adv * logp)

  g_loss = jax.jit(jax.grad(lambda p: obj.loss(model.apply, p, batch, key)[0]))(params)
  g_ref = jax.jit(jax.grad(advantage_weighted_logp))(params)
  a = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g_loss)])
  b = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g_ref)])
  cosine = float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
  assert float(jnp.linalg.norm(b)) > 0 and cosine < -0.999, cosine


def test_c7_advantages_and_toy_bandit_sign():
  r = jnp.array([[1.0, 0, 0, 1, 0, 0, 0, 0], [1.0] * 8])
  a = exploration.group_advantages(r)
  np.testing.assert_allclose(a.mean(-1), 0, atol=1e-6)
  np.testing.assert_allclose(a[0], (r[0] - 0.25) / np.std(np.asarray(r[0])), rtol=1e-6)
  assert (a[1] == 0).all()

  def loss(theta, key, sign):   # a bandit over V arms, reward 1 on arm 7; the GRPO surrogate of 64 draws
    logq = jax.nn.log_softmax(theta)
    arms = jax.random.categorical(key, jax.lax.stop_gradient(logq), shape=(8, 64))
    lp = logq[arms]
    adv = exploration.group_advantages((arms == 7).astype(jnp.float32))
    return -sign * exploration.clipped_surrogate(jnp.exp(lp - jax.lax.stop_gradient(lp)), adv, 0.1).mean()

  theta = jnp.zeros(V).at[7].set(2.0)
  for sign, up in ((1.0, True), (-1.0, False)):   # the flipped sign is the negative control
    new = theta - 1e-2 * jax.grad(loss)(theta, jax.random.PRNGKey(8), sign)
    assert (float(jax.nn.softmax(new)[7]) > float(jax.nn.softmax(theta)[7])) == up


def test_csft_loss_steps_and_curriculum(tiny):
  model, params = tiny
  rows = _grpo_batch(8)
  full = CsftObjective(4, "hard_teacher", (0, 1, 2), True)
  kl_only = CsftObjective(4, "hard_teacher", (1,), False)
  b = full.prepare(rows, jax.random.PRNGKey(0), step=jnp.int32(0))
  (loss, m), (loss1, _) = jax.jit(lambda b: [o.loss(model.apply, params, b, jax.random.PRNGKey(0))
                                             for o in (full, kl_only)])(b)
  np.testing.assert_allclose(loss, m["kl_0"] + m["kl_1"] + m["kl_2"] + m["answer_nll"], rtol=1e-5)
  np.testing.assert_allclose(loss1, m["kl_1"], rtol=1e-5)
  cur = CsftObjective(4, "hard_soft_curriculum", (0, 1, 2), True, curriculum_steps=10)
  assert not cur.prepare(rows, None, step=jnp.int32(9))["soft_feed"].any()
  assert cur.prepare(rows, None, step=jnp.int32(10))["soft_feed"].all()
  with pytest.raises(ValueError, match="loss_steps"):
    CsftObjective(4, "hard_teacher", (3,), True)


def test_csft_loss_feeds_and_scores_the_teacher_mixture_of_each_step(tiny):
  """Hard-teacher CSFT against a reference written from the spec with scipy: ONE uncached forward pass over
  [prompt; alpha*_0 .. alpha*_{S-1}]; step t's KL compares alpha*_t with the logits that chose step t (position
  P - 1 + t), the answer CE reads the logits after the last mixture. Feeding or scoring alpha*_{t+1} (an offset by
  one step) must not match."""
  model, params = tiny
  obj = CsftObjective(4, "hard_teacher", (0, 1, 2), True, train=False)
  b = obj.prepare(_grpo_batch(8), jax.random.PRNGKey(0), step=jnp.int32(0))
  loss, m = jax.jit(lambda b: obj.loss(model.apply, params, b, jax.random.PRNGKey(0)))(b)
  targets, w = np.asarray(b["targets"], np.float64), np.asarray(b["weights"], np.float64)
  S, P = 3, b["prompt"].shape[1]

  def reference(feed_shift=0, score_shift=0):
    feed = np.stack([targets[:, min(t + feed_shift, 3)] for t in range(S)], 1)
    logits = np.asarray(full_forward(model.apply, params, b["prompt"], jnp.asarray(feed, jnp.float32)), np.float64)
    row = np.zeros(len(w))
    for t in range(S):
      q = scipy.special.softmax(logits[:, P - 1 + t], -1)
      row += scipy.special.rel_entr(targets[:, min(t + score_shift, 3)], q).sum(-1)
    row -= scipy.special.log_softmax(logits[:, P - 1 + S], -1)[np.arange(len(w)), np.asarray(b["answer"])]
    return float((w * row).sum())
  np.testing.assert_allclose(float(loss), reference(), rtol=1e-5)
  assert abs(reference(feed_shift=1) - float(loss)) > 1e-3
  assert abs(reference(score_shift=1) - float(loss)) > 1e-3


# The family in the generic trainer ---------------------------------------------------------------------------
def _config(arg, **overrides):
  from configs import cot2
  from train.stored_config import apply_overrides
  c = cot2.get_config(arg)
  c.unlock()
  apply_overrides(c, overrides)
  c.lock()
  return c


@pytest.mark.parametrize("overrides, message", [
    ({"data.corpus": "stdlib", "data.vocab": "spm"}, "set data.corpus=mnns"),
    ({"data.vocab": "symbols"}, "set data.corpus=mnns (or mnns:L:lo-hi) and data.vocab=mnns"),
    ({"eval.num_batches": 1}, "raise eval.num_batches to 2"),  # 1308 rows at 800 per batch
    ({"model.vocab_multiple": 64}, "set model.vocab_multiple=1"),
    ({"model.attention_impl": "xla"}, "model.dropout_rate=0.1 drops attention probabilities"),
    ({"objective.loss_steps": "0,3,h"}, "thought steps are 0..2"),
    ({"objective.supervision": "teacher"}, "objective.supervision='teacher' is not one of"),
    ({"objective.method": "grpo", "objective.rollouts": 1}, "objective.rollouts=1 >= 2"),
    ({"data.corpus": "mnns:4:0-9"}, "digits must lie in 1..9"),
    ({"data.corpus": "mnns:3:1-9", "data.seq_len": 9, "model.max_position_embeddings": 9,
      "objective.loss_steps": "0,1,h"}, "decode.prompts: prompt 'D2 D7 D3 D2': give 3 digit tokens D1..D9"),
])
def test_bad_config_is_one_line_before_building(overrides, message):
  from train.experiment import build_experiment
  with pytest.raises(ValueError) as e:
    build_experiment(_config("csft,tiny", **overrides))
  assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow   # ~30 s; the default suite is at its budget (the notebook and bench runs cover it too)
def test_csft_then_grpo_from_its_checkpoint(tmp_path):
  """CSFT trains in the generic trainer; GRPO-MTS starts from its weights (checkpoint.init_from), evaluates with
  MTS thoughts and moves the parameters; the decode hook prints thoughts and an answer."""
  from train.restore import load_trained
  from train.loop import train
  csft = _config("csft,tiny")
  m = train(csft, str(tmp_path / "csft"))
  assert m["num_targets"] == 1308 and 0 <= m["accuracy"] <= 1 and m["kl_0"] > 0
  grpo = _config("grpo_mts,tiny", **{"checkpoint.init_from": str(tmp_path / "csft"), "train.num_steps": 3,
                                     "train.eval_every": 3, "train.checkpoint_every": 3})
  g = train(grpo, str(tmp_path / "grpo"))
  assert set(g) >= {"accuracy", "soft_accuracy"} and g["num_targets"] == 1308
  exp, _, p0 = load_trained(csft, str(tmp_path / "csft"))
  _, _, p1 = load_trained(grpo, str(tmp_path / "grpo"))
  moved = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(p0), jax.tree.leaves(p1)))
  assert 0 < moved < 1e-2                                           # a few steps at lr 5e-5
  [line] = exp.family.decode(p0, ["D2 D7 D3 D2"])
  assert line.startswith("<BOS> D2 D7 D3 D2 [S") and " => S" in line
  with pytest.raises(ValueError, match="give 4 digit tokens"):
    exp.family.decode(p0, ["D2 D7"])


def test_csft_learns_mnns_well_above_the_majority_answer():
  """The CSFT learning claim at the cheapest size that can fail: configs/cot2.py's model (d = 32, 2 layers,
  dropout 0.1) trained by its own objective for 6 epochs with its AdamW settings (one device, a plain loop: the
  trainer is the conformance suite's) reaches a self-fed validation accuracy (the official metric: the model's
  own softmax fed back, argmax answer) well above always answering the most frequent validation answer (0.34).
  Measured 0.53 here; 0.67 and 0.74 with initialisation seeds 0 and 1 (accuracy turns up between epochs 2 and 5;
  C8 runs 15 epochs for >= 0.70: the slow test below)."""
  import optax
  from configs import cot2
  from configs.families import build
  from tests.helpers import fit_plainly
  c = cot2.get_config("csft")
  fam = build(c, mnns.MnnsVocabulary())
  o = c.optim
  tx = optax.adamw(o.lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)
  params = fit_plainly(fam, tx, steps=6 * cot2.steps_per_epoch(), batch=16, seed=c.seed)
  ev = fam.evaluation
  evaluate = jax.jit(lambda p, b: ev.loss(fam.module.apply, p, ev.prepare(b, None), jax.random.PRNGKey(0))[1])
  hits = rows = 0.0
  answers = []
  for batch in itertools.islice(fam.data.eval_iterator(global_batch=c.eval.batch_size, seed=c.seed + 1),
                                c.eval.num_batches):
    m = evaluate(params, {k: jnp.asarray(v) for k, v in batch.items()})
    hits, rows = hits + float(m["accuracy"]) * float(m["num_targets"]), rows + float(m["num_targets"])
    answers += batch["answer"][batch["valid"] > 0].tolist()
  majority = max(answers.count(a) for a in set(answers)) / len(answers)
  assert rows == len(answers) == 1308 and 0.3 < majority < 0.4
  assert hits / rows > majority + 0.1, (hits / rows, majority)


@pytest.mark.slow
def test_c8_smoke_csft_learns_mnns_in_15_epochs(tmp_path):
  """C8's quick variant (spec §10): d = 32, lr 1e-3, batch 16, uniform CSFT, 15 epochs -> self-fed validation
  accuracy >= 0.70 (reference runs .866 / .849; majority 0.34). About a minute on 2 cores."""
  from configs import cot2
  from train.loop import train
  spe = cot2.steps_per_epoch()
  c = _config("csft", **{"train.num_steps": 15 * spe, "train.checkpoint_every": 15 * spe,
                         "train.eval_every": 15 * spe})
  m = train(c, str(tmp_path / "c8"))
  assert m["accuracy"] >= 0.70, m
  assert m["kl_0"] < 0.05, m                                        # step 0 is trivial: {+d1, -d1}
