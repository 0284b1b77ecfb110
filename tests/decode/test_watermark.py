"""EXP watermark: distortion-free over keys, detects 50-token generations of a trained causal LM (also after
edits), and gives uniform p-values on unwatermarked text."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from decode.generate import generate
from decode.sampling import SamplerConfig
from decode.watermark import (WatermarkConfig, key_uniforms, levenshtein_cost, p_value, statistic,
                              watermark_sample)


def test_watermarked_tokens_follow_the_model_distribution_over_keys():
  logits = jnp.log(jnp.array([0.35, 0.25, 0.2, 0.1, 0.07, 0.03]))
  seeds = jnp.arange(30000)
  toks = jax.jit(jax.vmap(lambda s: watermark_sample(logits, key_uniforms(s, jnp.array(0), 6))))(seeds)
  counts = np.bincount(np.asarray(toks), minlength=6)
  p = np.array([0.35, 0.25, 0.2, 0.1, 0.07, 0.03])
  assert stats.chisquare(counts, p * len(seeds)).pvalue > 1e-3
  # Truncated tokens (-inf) are never chosen.
  trunc = logits.at[0].set(-jnp.inf)
  assert not np.any(np.asarray(jax.vmap(lambda s: watermark_sample(trunc, key_uniforms(s, jnp.array(0), 6)))(
      seeds[:2000])) == 0)


def test_levenshtein_cost_matches_a_plain_dynamic_program():
  rng = np.random.default_rng(0)
  c = rng.uniform(-3, 0, (5, 7))
  gamma = 0.4
  A = np.zeros((6, 8))
  A[0] = np.arange(8) * gamma
  A[:, 0] = np.arange(6) * gamma
  for i in range(1, 6):
    for j in range(1, 8):
      A[i, j] = min(A[i - 1, j] + gamma, A[i, j - 1] + gamma, A[i - 1, j - 1] + c[i - 1, j - 1])
  np.testing.assert_allclose(levenshtein_cost(jnp.asarray(c, jnp.float32), gamma), A[5, 7], rtol=1e-5)


@pytest.fixture(scope="module")
def trained_lm(tmp_path_factory):
  from tests.helpers import tiny_causal_config
  from train.experiment import build_experiment
  from train.loop import train
  c = tiny_causal_config("modern", seq_len=64, num_steps=40)
  c.eval.num_batches = 1
  wd = str(tmp_path_factory.mktemp("lm"))
  metrics = train(c, wd)
  exp = build_experiment(c)
  import os

  from train import checkpoint as ckpt_lib
  ck = ckpt_lib.Checkpointer(os.path.join(wd, "checkpoints"), read_only=True)
  with jax.set_mesh(exp.mesh):
    params = ck.restore_params(ck.latest_step(), exp.abstract_state.params)
  ck.close()
  assert metrics["loss"] < 0.8 * np.log(260)   # it has learnt something: not a uniform model
  return exp.family.module, jax.device_get(params), exp.vocab


def _generate(model, params, vocab, n_rows, seed, watermark):
  prompts = [[vocab.cls_id] + vocab.encode(p) for p in ["def ", "import ", "class ", "    return "]]
  rows = [prompts[i % 4] for i in range(n_rows)]
  P = max(map(len, rows))
  arr = np.zeros((n_rows, P), np.int32)
  for i, r in enumerate(rows):
    arr[i, :len(r)] = r
  lengths = np.array([len(r) for r in rows], np.int32)
  toks, _ = generate(model.apply, model.init_cache, params, jnp.asarray(arr), jnp.asarray(lengths),
                     jax.random.PRNGKey(seed), max_new_tokens=50, sampler=SamplerConfig(temperature=1.0),
                     watermark=watermark)
  toks = np.asarray(toks)
  return [toks[i, lengths[i]:lengths[i] + 50] for i in range(n_rows)]


def test_watermarked_generations_are_detected(trained_lm):
  model, params, vocab = trained_lm
  wm = WatermarkConfig(seed=1234, n=256)
  texts = _generate(model, params, vocab, 8, seed=0, watermark=wm)
  pvals = [p_value(t, wm.seed, model.cfg.vocab_size, wm.n, num_null=200) for t in texts]
  assert np.mean(np.array(pvals) <= 0.01) >= 0.75, pvals
  # With the wrong key the same texts look unwatermarked.
  wrong = [p_value(t, 99, model.cfg.vocab_size, wm.n, num_null=200) for t in texts[:4]]
  assert min(wrong) > 0.01
  # Robust to edits: replace every 10th token, delete two, and the Levenshtein statistic still detects.
  edited = []
  for t in texts[:4]:
    e = t.copy()
    e[::10] = (e[::10] + 7) % 260
    edited.append(np.delete(e, [5, 17]))
  pe = [p_value(e, wm.seed, model.cfg.vocab_size, wm.n, num_null=100, edit=True) for e in edited]
  assert np.mean(np.array(pe) <= 0.02) >= 0.75, pe


def test_unwatermarked_p_values_are_uniform(trained_lm):
  model, params, vocab = trained_lm
  texts = _generate(model, params, vocab, 40, seed=5, watermark=None)
  pvals = [p_value(t, 1234, model.cfg.vocab_size, 256, num_null=100) for t in texts]
  assert stats.kstest(pvals, "uniform").pvalue > 0.01
  assert float(statistic(jnp.asarray(texts[0]), 1234, model.cfg.vocab_size, 256)) < 0
