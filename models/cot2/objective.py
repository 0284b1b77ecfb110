"""CoT2 objectives (Gozeten et al. 2025 §3-5) on MNNS batches (data/mnns.py), for the generic trainer.

  DiscreteCotObjective  SFT on `<BOS> D.. -> S.. <EOS>` (next-token CE on every token, prompt and <EOS> included);
                        evaluation: greedy decoding of L tokens after `<BOS> D.. ->`, correct iff the L-th is gold.
  CsftObjective         continuous supervision: at each of the L-1 thought steps KL(alpha*_t || softmax(logits)),
                        then CE of the final logits against the gold answer; the fed mixture is alpha*_t
                        (hard_teacher), the model's softmax (soft_teacher, gradient kept, as in the official code)
                        or hard until objective.curriculum_steps updates then soft (hard_soft_curriculum; the
                        official code also resets the optimiser there, which the generic trainer does not).
                        Evaluation: the model's own softmax fed back, argmax of the final logits (`accuracy`).
  GrpoObjective         GRPO with multi-token sampling or Dirichlet exploration: R rollouts per prompt, reward 1 iff
                        the final token (one draw from the untempered final softmax) is gold, group-normalised
                        advantages, per-step clipped ratios summed, divided by R x L.

Old policy = current parameters: the official code re-creates its old model before every single update, so the
ratio is exp(logp - stop_gradient(logp)), exactly 1 in value, with gradient grad logp (REINFORCE with group
advantages; the clip never acts). The policy forward is deterministic (dropout off), which is what makes the ratio
exactly 1 (in the official code the old model runs without dropout and the current one with it). The KL penalty
to a reference model is not implemented: every official script sets kl_coeff = 0.
Batch weights are normalised over the whole batch in `prepare` (valid rows only), so loss and metrics add up over
micro-batches. Legend: B rows, R rollouts, S thought steps (= L - 1), L digits, V vocabulary.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from models.cot2 import exploration
from models.cot2.rollout import rollout
from models.family import Objective
from models.losses import cross_entropy_with_accuracy

SUPERVISIONS = ("hard_teacher", "soft_teacher", "hard_soft_curriculum")
EXPLORATIONS = ("mts", "dirichlet")


def _row_weights(batch):
  valid = batch["valid"].astype(jnp.float32)
  return valid / jnp.maximum(valid.sum(), 1.0)


def _metrics(w_B, **values):
  out = {k: jnp.sum(w_B * v) for k, v in values.items()}
  out["num_targets"] = jnp.sum(w_B > 0).astype(jnp.float32)
  return out


def kl_to_target(target_BV: jax.Array, logits_BV: jax.Array) -> jax.Array:
  """[B] KL(target || softmax(logits)) as the official code computes it: -sum p log q + sum p log(p + 1e-8)."""
  logq = jax.nn.log_softmax(logits_BV.astype(jnp.float32), axis=-1)
  return -jnp.sum(target_BV * logq, -1) + jnp.sum(target_BV * jnp.log(target_BV + 1e-8), -1)


def answer_nll(logits_BV: jax.Array, answer_B: jax.Array) -> jax.Array:
  return cross_entropy_with_accuracy(logits_BV[:, None], answer_B[:, None])[0][:, 0]


def greedy(t, logits_BV, key):
  del t, key
  return jax.nn.one_hot(jnp.argmax(logits_BV, -1), logits_BV.shape[-1], dtype=jnp.float32), None


def self_fed(t, logits_BV, key):
  del t, key
  return jax.nn.softmax(logits_BV.astype(jnp.float32), axis=-1), None


def mts_choose(k: int, normalize: bool):
  def choose(t, logits_BV, key):
    del t
    probs = exploration.mts_probs(logits_BV.astype(jnp.float32), k, normalize)
    tokens = exploration.mts_sample(key, probs, k)
    logp = exploration.mts_logprob(probs, tokens)
    return exploration.mts_mixture(tokens, logits_BV.shape[-1]), logp / (1 if normalize else k)
  return choose


def dirichlet_choose(floor: float, scale: float):
  def choose(t, logits_BV, key):
    del t
    alpha, support = exploration.dirichlet_alpha(logits_BV.astype(jnp.float32), floor, scale)
    w, log_w = exploration.dirichlet_sample(key, alpha, support)
    return w, exploration.dirichlet_logprob(alpha, support, jax.lax.stop_gradient(log_w))
  return choose


@dataclasses.dataclass(frozen=True)
class DiscreteCotObjective(Objective):
  num_digits: int
  train: bool = True        # dropout on (model.dropout_rate); evaluation also decodes greedily

  def prepare(self, batch, rng, *, step=None):
    return {**batch, "weights": _row_weights(batch)}

  def loss(self, apply_fn: Callable[..., Any], params: Any, batch, rng):
    tokens = batch["tokens"]
    w = batch["weights"]
    logits = apply_fn({"params": params}, tokens, deterministic=not self.train, rngs={"dropout": rng})
    nll, correct = cross_entropy_with_accuracy(logits[:, :-1], tokens[:, 1:])
    loss = jnp.sum(w * nll.mean(-1))
    values = {"loss": nll.mean(-1), "token_accuracy": correct.mean(-1)}
    if not self.train:   # the official metric: greedy L tokens after "<BOS> D.. ->", the last one vs gold
      prompt = tokens[:, :self.num_digits + 2]
      _, final, _ = rollout(apply_fn, params, prompt, self.num_digits - 1, greedy, rng)
      values["accuracy"] = (jnp.argmax(final, -1) == batch["answer"]).astype(jnp.float32)
    return loss, _metrics(w, **values)


@dataclasses.dataclass(frozen=True)
class CsftObjective(Objective):
  num_digits: int
  supervision: str = "hard_teacher"
  loss_steps: tuple[int, ...] = (0, 1, 2)   # thought steps whose KL enters the loss
  answer_loss: bool = True                   # the final hard CE ("h")
  curriculum_steps: int = 0                  # hard_soft_curriculum: hard before this many updates
  train: bool = True

  def __post_init__(self):
    if self.supervision not in SUPERVISIONS:
      raise ValueError(f"objective.supervision={self.supervision!r}: use one of {list(SUPERVISIONS)}")
    bad = [s for s in self.loss_steps if not 0 <= s < self.num_digits - 1]
    if bad:
      raise ValueError(f"objective.loss_steps has steps {bad}; thought steps are 0..{self.num_digits - 2} (and 'h')")

  def prepare(self, batch, rng, *, step=None):
    B = batch["valid"].shape[0]
    if self.supervision == "hard_teacher":
      soft = jnp.zeros((B,), bool)
    elif self.supervision == "soft_teacher" or step is None:
      soft = jnp.ones((B,), bool)
    else:
      soft = jnp.broadcast_to(step >= self.curriculum_steps, (B,))
    return {**batch, "weights": _row_weights(batch), "soft_feed": soft}

  def loss(self, apply_fn, params, batch, rng):
    w, targets_BLV, soft = batch["weights"], batch["targets"], batch["soft_feed"]

    def teacher(t, logits_BV, key):
      del key
      q = jax.nn.softmax(logits_BV.astype(jnp.float32), axis=-1)
      return jnp.where(soft[:, None], q, targets_BLV[:, t]), None

    S = self.num_digits - 1
    k_train, k_eval = jax.random.split(rng)
    step_logits, final, _ = rollout(apply_fn, params, batch["prompt"], S, teacher, k_train,
                                    deterministic=not self.train)
    kl_SB = jax.vmap(kl_to_target)(jnp.moveaxis(targets_BLV[:, :S], 1, 0), step_logits)
    ce = answer_nll(final, batch["answer"])
    row = sum(kl_SB[t] for t in self.loss_steps) + (ce if self.answer_loss else 0.0)
    values = {"loss": row, "answer_nll": ce,
              "tf_accuracy": (jnp.argmax(final, -1) == batch["answer"]).astype(jnp.float32)}
    values.update({f"kl_{t}": kl_SB[t] for t in range(S)})
    if not self.train:   # the official evaluation: the model's own softmax fed back, argmax at the end
      _, final_self, _ = rollout(apply_fn, params, batch["prompt"], S, self_fed, k_eval)
      values["accuracy"] = (jnp.argmax(final_self, -1) == batch["answer"]).astype(jnp.float32)
    return jnp.sum(w * row), _metrics(w, **values)


@dataclasses.dataclass(frozen=True)
class GrpoObjective(Objective):
  num_digits: int
  exploration: str = "mts"
  k: int = 3                      # MTS draws per step
  normalize: bool = True          # MTS temperature K (sampling_normalization)
  rollouts: int = 8
  clip_epsilon: float = 0.1
  support_floor: float = 1e-3     # Dirichlet support and clamp
  dirichlet_scale: float = 1.0
  train: bool = True

  def __post_init__(self):
    if self.exploration not in EXPLORATIONS:
      raise ValueError(f"objective.exploration={self.exploration!r}: use one of {list(EXPLORATIONS)}")
    if self.k < 1 or self.rollouts < 2:
      raise ValueError(f"objective.k={self.k} must be >= 1 and objective.rollouts={self.rollouts} >= 2 (advantages "
                       "are normalised within a prompt's rollouts)")

  def prepare(self, batch, rng, *, step=None):
    return {**batch, "weights": _row_weights(batch)}

  def choose(self):
    if self.exploration == "mts":
      return mts_choose(self.k, self.normalize)
    return dirichlet_choose(self.support_floor, self.dirichlet_scale)

  def loss(self, apply_fn, params, batch, rng):
    w, answer = batch["weights"], batch["answer"]
    S, R = self.num_digits - 1, self.rollouts
    if not self.train:   # the official GRPO evaluation: MTS thoughts (for both explorations), argmax at the end
      k1, k2 = jax.random.split(rng)
      _, final, _ = rollout(apply_fn, params, batch["prompt"], S, mts_choose(self.k, self.normalize), k1)
      _, final_self, _ = rollout(apply_fn, params, batch["prompt"], S, self_fed, k2)
      acc = (jnp.argmax(final, -1) == answer).astype(jnp.float32)
      zero = jnp.zeros_like(acc)
      return jnp.sum(w * zero), _metrics(w, loss=zero, accuracy=acc, soft_accuracy=(
          jnp.argmax(final_self, -1) == answer).astype(jnp.float32))
    B = answer.shape[0]
    prompt = jnp.repeat(batch["prompt"], R, axis=0)                     # [B*R, P]: rollouts of a row adjacent
    k_roll, k_final = jax.random.split(rng)
    _, final, logp_SN = rollout(apply_fn, params, prompt, S, self.choose(), k_roll)
    logq = jax.nn.log_softmax(final.astype(jnp.float32), axis=-1)
    token = jax.random.categorical(k_final, jax.lax.stop_gradient(logq), axis=-1)
    logp_final = jnp.take_along_axis(logq, token[:, None], axis=-1)[:, 0]
    rewards = (token == jnp.repeat(answer, R)).astype(jnp.float32).reshape(B, R)
    adv = jax.lax.stop_gradient(exploration.group_advantages(rewards)).reshape(B * R)
    logp = jnp.concatenate([logp_SN, logp_final[None]], 0)             # [S+1, B*R]
    ratio = jnp.exp(logp - jax.lax.stop_gradient(logp))                 # = 1: old policy = current parameters
    surrogate = exploration.clipped_surrogate(ratio, adv[None], self.clip_epsilon).sum(0)
    row = -surrogate.reshape(B, R).sum(-1) / (R * self.num_digits)
    return jnp.sum(w * row), _metrics(w, loss=row, reward=rewards.mean(-1), ratio=ratio.mean((0,)).reshape(
        B, R).mean(-1))
