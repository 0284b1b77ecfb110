"""ModernBERT (`ModernBertForMaskedLM`) <-> models.modernbert.

Mapping (torch Linear [out, in] -> our kernels [in, ...]: transpose, then reshape):
  model.embeddings.tok_embeddings.weight [V, d] -> model/embeddings/tok_embeddings/embedding  (decoder.weight tied)
  model.embeddings.norm.weight                  -> model/embeddings/norm/scale
  model.layers.i.attn_norm.weight (i >= 1)      -> model/layers_i/attn_norm/scale   (layer 0 has none)
  model.layers.i.attn.Wqkv.weight [3d, d]       -> model/layers_i/attn/Wqkv/kernel [d, 3, H, Dh]
  model.layers.i.attn.Wo.weight [d, d]          -> model/layers_i/attn/Wo/kernel [H, Dh, d]
  model.layers.i.mlp_norm.weight                -> model/layers_i/mlp_norm/scale
  model.layers.i.mlp.Wi.weight [2I, d]          -> model/layers_i/mlp/Wi/kernel [d, 2, I]  (index 0 = activated half)
  model.layers.i.mlp.Wo.weight [d, I]           -> model/layers_i/mlp/Wo/kernel [I, d]
  model.final_norm.weight, head.dense.weight, head.norm.weight, decoder.bias -> final_norm, head/dense, head/norm,
  decoder_bias.
Configs in both spellings are accepted (4.x / hub: global_attn_every_n_layers, global_rope_theta, local_rope_theta;
5.x: layer_types, rope_parameters); `layer_norm_eps` is ignored as Hugging Face ignores it (norm_eps counts).
"""
from typing import Sequence

import numpy as np

from models.modernbert import ModernBertConfig, ModernBertForMaskedLM
from models.hf.tensors import StateDictReader, read_hf_dir, write_hf_dir

_UNSUPPORTED_TRUE = ("norm_bias", "attention_bias", "mlp_bias", "classifier_bias")


def modernbert_config(d: dict) -> ModernBertConfig:
  """Normalises a v4 or v5 ModernBertConfig dict into our config (the spec's normalise_modernbert)."""
  for key in _UNSUPPORTED_TRUE:
    if d.get(key, False):
      raise ValueError(f"ModernBERT config {key}=True is not supported (released checkpoints use False)")
  if not d.get("decoder_bias", True) or not d.get("tie_word_embeddings", True):
    raise ValueError("ModernBERT config needs decoder_bias=True and tie_word_embeddings=True")
  n_layers = d.get("num_hidden_layers", 22)
  every = d.get("global_attn_every_n_layers", 3)
  types = d.get("layer_types") or ["full_attention" if i % every == 0 else "sliding_attention"
                                   for i in range(n_layers)]
  rope = d.get("rope_parameters")
  if rope:
    if any(v.get("rope_type", "default") != "default" for v in rope.values()):
      raise ValueError(f"ModernBERT rope_parameters {rope}: only rope_type 'default' is supported")
    theta_g, theta_l = rope["full_attention"]["rope_theta"], rope["sliding_attention"]["rope_theta"]
  else:
    theta_g, theta_l = d.get("global_rope_theta", 160_000.0), d.get("local_rope_theta", 10_000.0)
  return ModernBertConfig(
      vocab_size=d.get("vocab_size", 50368), hidden_size=d.get("hidden_size", 768), num_layers=n_layers,
      num_heads=d.get("num_attention_heads", 12), intermediate_size=d.get("intermediate_size", 1152),
      local_attention=d.get("local_attention", 128), global_rope_theta=float(theta_g), local_rope_theta=float(theta_l),
      norm_eps=d.get("norm_eps", 1e-5), hidden_activation=d.get("hidden_activation", "gelu"),
      classifier_activation=d.get("classifier_activation", "gelu"),
      initializer_range=d.get("initializer_range", 0.02),
      max_position_embeddings=d.get("max_position_embeddings", 8192), layer_types=tuple(types))


def params_from_state_dict(cfg: ModernBertConfig, state: dict[str, np.ndarray]) -> dict:
  d, H, Dh, I, V = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.intermediate_size, cfg.vocab_size  # noqa: E741
  take = StateDictReader(state, "ModernBERT")

  model = {"embeddings": {"tok_embeddings": {"embedding": take("model.embeddings.tok_embeddings.weight", (V, d))},
                          "norm": {"scale": take("model.embeddings.norm.weight", (d,))}},
           "final_norm": {"scale": take("model.final_norm.weight", (d,))}}
  for i in range(cfg.num_layers):
    p = f"model.layers.{i}"
    layer = {"attn": {"Wqkv": {"kernel": take(p + ".attn.Wqkv.weight", (d, 3, H, Dh), True, source=(3 * d, d))},
                      "Wo": {"kernel": take(p + ".attn.Wo.weight", (H, Dh, d), True, source=(d, d))}},
             "mlp_norm": {"scale": take(p + ".mlp_norm.weight", (d,))},
             "mlp": {"Wi": {"kernel": take(p + ".mlp.Wi.weight", (d, 2, I), True, source=(2 * I, d))},
                     "Wo": {"kernel": take(p + ".mlp.Wo.weight", (I, d), True)}}}
    if i > 0:
      layer["attn_norm"] = {"scale": take(p + ".attn_norm.weight", (d,))}
    model[f"layers_{i}"] = layer
  params = {"model": model,
            "head": {"dense": {"kernel": take("head.dense.weight", (d, d), True)},
                     "norm": {"scale": take("head.norm.weight", (d,))}},
            "decoder_bias": take("decoder.bias", (V,))}
  if "decoder.weight" in state:
    take.mark_used("decoder.weight")
    if not np.array_equal(state["decoder.weight"], state["model.embeddings.tok_embeddings.weight"]):
      raise ValueError("decoder.weight differs from the token embedding: untied heads are not supported")
  take.check_all_used()
  return params


def state_dict_from_params(cfg: ModernBertConfig, params: dict) -> dict[str, np.ndarray]:
  d, I = cfg.hidden_size, cfg.intermediate_size  # noqa: E741
  g = lambda x: np.asarray(x, np.float32)  # noqa: E731
  c = lambda x: np.ascontiguousarray(x)  # noqa: E731
  m = params["model"]
  state = {"model.embeddings.tok_embeddings.weight": c(g(m["embeddings"]["tok_embeddings"]["embedding"])),
           "model.embeddings.norm.weight": c(g(m["embeddings"]["norm"]["scale"])),
           "model.final_norm.weight": c(g(m["final_norm"]["scale"])),
           "head.dense.weight": c(g(params["head"]["dense"]["kernel"]).T),
           "head.norm.weight": c(g(params["head"]["norm"]["scale"])),
           "decoder.bias": c(g(params["decoder_bias"]))}
  for i in range(cfg.num_layers):
    p, q = f"model.layers.{i}", m[f"layers_{i}"]
    state[p + ".attn.Wqkv.weight"] = c(g(q["attn"]["Wqkv"]["kernel"]).reshape(d, 3 * d).T)
    state[p + ".attn.Wo.weight"] = c(g(q["attn"]["Wo"]["kernel"]).reshape(d, d).T)
    state[p + ".mlp_norm.weight"] = c(g(q["mlp_norm"]["scale"]))
    state[p + ".mlp.Wi.weight"] = c(g(q["mlp"]["Wi"]["kernel"]).reshape(d, 2 * I).T)
    state[p + ".mlp.Wo.weight"] = c(g(q["mlp"]["Wo"]["kernel"]).T)
    if i > 0:
      state[p + ".attn_norm.weight"] = c(g(q["attn_norm"]["scale"]))
  return state


def hf_config_dict(cfg: ModernBertConfig, spelling: str = "v5", pad_id: int = 0, cls_id: int = 1,
                   sep_id: int = 2) -> dict:
  types = [("full_attention" if cfg.is_global(i) else "sliding_attention") for i in range(cfg.num_layers)]
  out = {"architectures": ["ModernBertForMaskedLM"], "model_type": "modernbert", "vocab_size": cfg.vocab_size,
         "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers,
         "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.intermediate_size,
         "hidden_activation": cfg.hidden_activation, "classifier_activation": cfg.classifier_activation,
         "max_position_embeddings": cfg.max_position_embeddings, "norm_eps": cfg.norm_eps, "norm_bias": False,
         "attention_bias": False, "mlp_bias": False, "classifier_bias": False, "decoder_bias": True,
         "tie_word_embeddings": True, "local_attention": cfg.local_attention,
         "initializer_range": cfg.initializer_range, "embedding_dropout": 0.0, "attention_dropout": 0.0,
         "mlp_dropout": 0.0, "classifier_dropout": 0.0, "pad_token_id": pad_id, "bos_token_id": cls_id,
         "cls_token_id": cls_id, "eos_token_id": sep_id, "sep_token_id": sep_id}
  if spelling == "v5":
    out["layer_types"] = types
    out["rope_parameters"] = {"full_attention": {"rope_type": "default", "rope_theta": cfg.global_rope_theta},
                              "sliding_attention": {"rope_type": "default", "rope_theta": cfg.local_rope_theta}}
  elif spelling == "v4":
    every = next((n for n in range(1, cfg.num_layers + 1)
                  if all(cfg.is_global(i) == (i % n == 0) for i in range(cfg.num_layers))), None)
    if every is None:
      raise ValueError("this layer pattern has no v4 spelling (global_attn_every_n_layers); use spelling='v5'")
    out.update(global_attn_every_n_layers=every, global_rope_theta=cfg.global_rope_theta,
               local_rope_theta=cfg.local_rope_theta)
  else:
    raise ValueError(f"spelling={spelling!r}: use 'v5' or 'v4'")
  return out


def load_modernbert(path: str) -> tuple[ModernBertForMaskedLM, dict]:
  """Reads a Hugging Face ModernBERT directory (config.json + model.safetensors)."""
  config, state = read_hf_dir(path)
  cfg = modernbert_config(config)
  return ModernBertForMaskedLM(cfg), params_from_state_dict(cfg, state)


def save_modernbert(model: ModernBertForMaskedLM | ModernBertConfig, params: dict, path: str,
                    spelling: str = "v5") -> None:
  """Writes a directory that `transformers.ModernBertForMaskedLM.from_pretrained` loads (tied decoder omitted)."""
  cfg = model.cfg if isinstance(model, ModernBertForMaskedLM) else model
  write_hf_dir(path, state_dict_from_params(cfg, params), hf_config_dict(cfg, spelling))


def save_modernbert_classifier(cfg: ModernBertConfig, params: dict, path: str, labels: Sequence[str],
                               pooling: str) -> None:
  """A models.modernbert.ModernBertForSequenceClassification as a directory that
  `transformers.ModernBertForSequenceClassification` (and `pipeline("text-classification")`) loads: the encoder and
  prediction head as the masked LM's, `classifier.weight/bias`, the labels as id2label, `classifier_pooling`."""
  state = state_dict_from_params(cfg, {**params, "decoder_bias": np.zeros(cfg.vocab_size, np.float32)})
  del state["decoder.bias"]   # a sequence classifier has no decoder
  state["classifier.weight"] = np.ascontiguousarray(np.asarray(params["classifier"]["kernel"], np.float32).T)
  state["classifier.bias"] = np.ascontiguousarray(np.asarray(params["classifier"]["bias"], np.float32))
  config = hf_config_dict(cfg)
  config.update(architectures=["ModernBertForSequenceClassification"], classifier_pooling=pooling,
                num_labels=len(labels), id2label={str(i): n for i, n in enumerate(labels)},
                label2id={n: i for i, n in enumerate(labels)}, problem_type="single_label_classification")
  write_hf_dir(path, state, config)
