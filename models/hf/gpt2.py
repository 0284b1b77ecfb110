"""GPT-2 (`GPT2LMHeadModel`) <-> models.causal_lm (style="gpt2").

Mapping (HF Conv1D weights are already [in, out], so no transposes):
  transformer.wte.weight [V, d]            -> transformer/wte/embedding        (lm_head.weight is tied: dropped)
  transformer.wpe.weight [P, d]            -> transformer/wpe/embedding
  transformer.h.i.ln_1/ln_2.{weight,bias}  -> h_i/ln_1, ln_2 {scale, bias}
  transformer.h.i.attn.c_attn.weight [d, 3d], bias [3d] -> h_i/attn/Wqkv kernel [d, 3, H, Dh], bias [3, H, Dh]
  transformer.h.i.attn.c_proj.weight [d, d], bias       -> h_i/attn/Wo kernel [H, Dh, d], bias [d]
  transformer.h.i.mlp.c_fc / c_proj        -> h_i/mlp/c_fc, c_proj
  transformer.ln_f                         -> ln_f
Unknown keys are an error; the causal-mask buffers of old checkpoints (attn.bias, attn.masked_bias) are dropped.
"""
from typing import Any

import numpy as np

from models.causal_lm import CausalLm, CausalLmConfig
from models.hf.tensors import StateDictReader, read_hf_dir, write_hf_dir

_DROP_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def gpt2_config(hf: dict) -> CausalLmConfig:
  """HF GPT2Config dict -> CausalLmConfig; options that change the maths and that we do not implement are refused."""
  for key, ok in (("scale_attn_by_inverse_layer_idx", False), ("reorder_and_upcast_attn", False),
                  ("add_cross_attention", False)):
    if hf.get(key, ok) != ok:
      raise ValueError(f"GPT-2 config {key}={hf[key]} is not supported")
  if not hf.get("scale_attn_weights", True):
    raise ValueError("GPT-2 config scale_attn_weights=False is not supported")
  d = hf.get("n_embd", 768)
  return CausalLmConfig(vocab_size=hf.get("vocab_size", 50257), hidden_size=d, num_layers=hf.get("n_layer", 12),
                        num_heads=hf.get("n_head", 12), intermediate_size=hf.get("n_inner") or 4 * d,
                        max_position_embeddings=hf.get("n_positions", 1024), style="gpt2",
                        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                        activation=hf.get("activation_function", "gelu_new"),
                        initializer_range=hf.get("initializer_range", 0.02))


def params_from_state_dict(cfg: CausalLmConfig, state: dict[str, np.ndarray]) -> dict:
  state = {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v for k, v in state.items()}
  d, H, Dh = cfg.hidden_size, cfg.num_heads, cfg.head_dim
  take = StateDictReader(state, "GPT-2", _DROP_SUFFIXES)   # Conv1D weights are stored [in, out]

  def ln(prefix):
    return {"scale": take(prefix + ".weight", (d,)), "bias": take(prefix + ".bias", (d,))}

  params: dict[str, Any] = {
      "wte": {"embedding": take("transformer.wte.weight", (cfg.vocab_size, d))},
      "wpe": {"embedding": take("transformer.wpe.weight", (cfg.max_position_embeddings, d))},
      "ln_f": ln("transformer.ln_f"),
  }
  for i in range(cfg.num_layers):
    p = f"transformer.h.{i}"
    params[f"h_{i}"] = {
        "ln_1": ln(p + ".ln_1"), "ln_2": ln(p + ".ln_2"),
        "attn": {"Wqkv": {"kernel": take(p + ".attn.c_attn.weight", (d, 3, H, Dh), source=(d, 3 * d)),
                          "bias": take(p + ".attn.c_attn.bias", (3, H, Dh), source=(3 * d,))},
                 "Wo": {"kernel": take(p + ".attn.c_proj.weight", (H, Dh, d), source=(d, d)),
                        "bias": take(p + ".attn.c_proj.bias", (d,))}},
        "mlp": {"c_fc": {"kernel": take(p + ".mlp.c_fc.weight", (d, cfg.intermediate_size)),
                         "bias": take(p + ".mlp.c_fc.bias", (cfg.intermediate_size,))},
                "c_proj": {"kernel": take(p + ".mlp.c_proj.weight", (cfg.intermediate_size, d)),
                           "bias": take(p + ".mlp.c_proj.bias", (d,))}},
    }
  if "lm_head.weight" in state:
    take.mark_used("lm_head.weight")
    if not np.array_equal(state["lm_head.weight"], state["transformer.wte.weight"]):
      raise ValueError("lm_head.weight differs from transformer.wte.weight: untied GPT-2 heads are not supported")
  take.check_all_used()
  return params


def state_dict_from_params(cfg: CausalLmConfig, params: dict) -> dict[str, np.ndarray]:
  d = cfg.hidden_size
  g = lambda x: np.ascontiguousarray(np.asarray(x, np.float32))  # noqa: E731
  state = {"transformer.wte.weight": g(params["wte"]["embedding"]),
           "transformer.wpe.weight": g(params["wpe"]["embedding"]),
           "transformer.ln_f.weight": g(params["ln_f"]["scale"]), "transformer.ln_f.bias": g(params["ln_f"]["bias"])}
  for i in range(cfg.num_layers):
    p, q = f"transformer.h.{i}", params[f"h_{i}"]
    for n in ("ln_1", "ln_2"):
      state[f"{p}.{n}.weight"], state[f"{p}.{n}.bias"] = g(q[n]["scale"]), g(q[n]["bias"])
    state[f"{p}.attn.c_attn.weight"] = g(q["attn"]["Wqkv"]["kernel"]).reshape(d, 3 * d)
    state[f"{p}.attn.c_attn.bias"] = g(q["attn"]["Wqkv"]["bias"]).reshape(3 * d)
    state[f"{p}.attn.c_proj.weight"] = g(q["attn"]["Wo"]["kernel"]).reshape(d, d)
    state[f"{p}.attn.c_proj.bias"] = g(q["attn"]["Wo"]["bias"])
    for n in ("c_fc", "c_proj"):
      state[f"{p}.mlp.{n}.weight"], state[f"{p}.mlp.{n}.bias"] = g(q["mlp"][n]["kernel"]), g(q["mlp"][n]["bias"])
  return state


def load_gpt2(path: str) -> tuple[CausalLm, dict]:
  """Reads a Hugging Face GPT-2 directory (config.json + model.safetensors)."""
  config, state = read_hf_dir(path)
  cfg = gpt2_config(config)
  return CausalLm(cfg), params_from_state_dict(cfg, state)


def save_gpt2(model: CausalLm | CausalLmConfig, params: dict, path: str, eos_token_id: int | None = None) -> None:
  """Writes a directory that `transformers.GPT2LMHeadModel.from_pretrained` loads (tied lm_head omitted)."""
  cfg = model.cfg if isinstance(model, CausalLm) else model
  if cfg.style != "gpt2":
    raise ValueError("save_gpt2 needs a style='gpt2' model")
  hf = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_position_embeddings, "n_embd": cfg.hidden_size, "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads, "n_inner": cfg.intermediate_size, "activation_function": cfg.activation,
        "layer_norm_epsilon": cfg.norm_eps, "initializer_range": cfg.initializer_range,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": True,
        "bos_token_id": eos_token_id, "eos_token_id": eos_token_id}
  write_hf_dir(path, state_dict_from_params(cfg, params), hf)
