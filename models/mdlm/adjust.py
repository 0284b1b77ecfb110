"""ADJUST (spec §3): one recurrent block on top of a frozen MDLM that updates every position's logits after each
revealed token, so one base call can be followed by K - 1 cheap calls that track the joint.

Legend: B batch, T length, D hidden, V vocabulary, S max unroll depth (speculation_len).

At depth d, for every position: u = W_down [RMSNorm_e(E_base(x_d)); RMSNorm_h(h_{d-1})] (with bias), u = one
bidirectional pre-norm block (attention with RoPE, gated MLP), h_d = RMSNorm_post(u) + h_{d-1}, and the logits are
the frozen base head on h_d (with SUBS: the mask never predicted, unmasked tokens copied; spec pitfall 1). h_0 is
the base's last hidden state from the step's full call. The block's parameters are shared across depths.

`AdjustedMdlm` holds the base under MaskedDiffusionLM's own parameter names (`model`, `head`, `decoder_bias`) and
the ADJUST layer under `adjust`, so `checkpoint.init_from=<an MDLM run>` loads the whole base and nothing else;
the family freezes every parameter outside `adjust` (models.family.Family.frozen).
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers import GegluMlp, Linear, RMSNorm, SelfAttention
from models.layers.inputs import default_inputs
from models.mdlm.model import MaskedDiffusionLM


@dataclasses.dataclass(frozen=True)
class AdjustConfig:
  num_heads: int = 4
  intermediate_size: int = 512
  rope_theta: float = 10_000.0
  norm_eps: float = 1e-6
  max_depth: int = 3            # S = speculation_len: trained for up to S + 1 tokens per base call

  def __post_init__(self):
    for key in ("num_heads", "intermediate_size", "max_depth"):
      if getattr(self, key) < 1:
        raise ValueError(f"model.adjust_{key}={getattr(self, key)} must be >= 1")


class AdjustLayer(nn.Module):
  """(token embeddings e [B, T, D], previous state h [B, T, D]) -> new state h [B, T, D]."""
  hidden_size: int
  cfg: AdjustConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, e_BTD, h_BTD, segment_ids_BT, positions_BT):
    cfg, D, dt = self.cfg, self.hidden_size, self.dtype
    if D % cfg.num_heads:
      raise ValueError(f"model.hidden_size={D} is not divisible by model.adjust_num_heads={cfg.num_heads}")
    x = jnp.concatenate([RMSNorm(cfg.norm_eps, dt, name="norm_e")(e_BTD),
                         RMSNorm(cfg.norm_eps, dt, name="norm_h")(h_BTD)], axis=-1)
    u_BTD = Linear((D,), (None, "embed"), use_bias=True, dtype=dt, name="down")(x)
    a = SelfAttention(num_heads=cfg.num_heads, head_dim=D // cfg.num_heads, rope_theta=cfg.rope_theta, dtype=dt,
                      name="attn")(RMSNorm(cfg.norm_eps, dt, name="attn_norm")(u_BTD), segment_ids_BT, positions_BT)
    u_BTD = u_BTD + a
    u_BTD = u_BTD + GegluMlp(D, cfg.intermediate_size, "silu", dtype=dt, name="mlp")(
        RMSNorm(cfg.norm_eps, dt, name="mlp_norm")(u_BTD))
    return RMSNorm(cfg.norm_eps, dt, name="norm_post")(u_BTD) + h_BTD


class AdjustedMdlm(MaskedDiffusionLM):
  """A MaskedDiffusionLM plus the ADJUST layer. `base_step(x)` -> (logits, h_0) is one full base call;
  `adjust_step(x, h)` -> (logits, h) one ADJUST call on the tokens after a reveal."""
  adjust_cfg: AdjustConfig = AdjustConfig()

  def setup(self):
    super().setup()
    self.adjust = AdjustLayer(self.cfg.hidden_size, self.adjust_cfg, self.cfg.compute_dtype)

  def __call__(self, tokens_BT, segment_ids_BT=None, positions_BT=None):
    """Initialisation and a smoke path: one base call followed by one ADJUST call."""
    _, h_BTD = self.base_step(tokens_BT, segment_ids_BT, positions_BT)
    return self.adjust_step(tokens_BT, h_BTD, segment_ids_BT, positions_BT)[0]

  def base_step(self, tokens_BT, segment_ids_BT=None, positions_BT=None):
    h_BTD = self.hidden(tokens_BT, segment_ids_BT, positions_BT)
    return self.logits_from_hidden(h_BTD, tokens_BT), h_BTD

  def adjust_step(self, tokens_BT, h_BTD, segment_ids_BT=None, positions_BT=None):
    segment_ids_BT, positions_BT = default_inputs(tokens_BT, segment_ids_BT, positions_BT)
    h_BTD = self.adjust(self.embed(tokens_BT), h_BTD, segment_ids_BT, positions_BT)
    return self.logits_from_hidden(h_BTD, tokens_BT), h_BTD


def depth_probabilities(max_depth: int) -> jax.Array:
  """P(D = 1..S) = softmax([0.5^0, ..., 0.5^(S-1)]) (spec §5.2: the softmax of the weights, not their
  normalisation; S = 3 gives .481 / .292 / .227)."""
  return jax.nn.softmax(0.5 ** jnp.arange(max_depth, dtype=jnp.float32))
