"""ELECTRA (`ElectraForPreTraining`, `ElectraForMaskedLM`) <-> models.electra (classic backbone).

Mapping (torch Linear [out, in] -> our kernels [in, ...]: transpose, then reshape):
  electra.embeddings.{word,position,token_type}_embeddings.weight -> embeddings/{...}/embedding
  electra.embeddings.LayerNorm.{weight,bias}               -> embeddings/LayerNorm/{scale,bias}
  electra.embeddings_project.{weight,bias} (iff E != d)    -> T/encoder/embeddings_project/{kernel,bias}
  electra.encoder.layer.i.attention.self.{query,key,value} -> T/encoder/layers_i/attention/Wqkv [d, 3, H, Dh]
  electra.encoder.layer.i.attention.output.dense           -> T/encoder/layers_i/attention/Wo [H, Dh, d]
  electra.encoder.layer.i.attention.output.LayerNorm       -> T/encoder/layers_i/attention_norm
  electra.encoder.layer.i.intermediate.dense               -> T/encoder/layers_i/mlp/c_fc
  electra.encoder.layer.i.output.{dense,LayerNorm}         -> T/encoder/layers_i/mlp/c_proj, .../output_norm
  discriminator_predictions.{dense,dense_prediction}       -> discriminator/discriminator_predictions/...
  generator_predictions.{dense,LayerNorm}                  -> generator/generator_predictions/...
  generator_lm_head.bias                                   -> generator/lm_bias  (its weight is the tied table)
T is "discriminator" or "generator". The joint model reads a discriminator directory and a generator directory:
their embedding tables are one tensor in the original, so they must agree (checked), and the discriminator's copy
is used.
"""
import dataclasses

import jax
import numpy as np

from models.electra import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining, ElectraPretrainingModel
from models.hf.tensors import StateDictReader, read_hf_dir, write_hf_dir

_ARCH = {"ElectraForPreTraining": "discriminator", "ElectraForMaskedLM": "generator"}


def electra_config(d: dict) -> ElectraConfig:
  """Our config of one tower from a Hugging Face ElectraConfig dict."""
  if d.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"ELECTRA position_embedding_type={d['position_embedding_type']!r}: only 'absolute' is supported")
  return ElectraConfig(
      vocab_size=d.get("vocab_size", 30522), embedding_size=d.get("embedding_size", 128),
      hidden_size=d.get("hidden_size", 256), num_layers=d.get("num_hidden_layers", 12),
      num_heads=d.get("num_attention_heads", 4), intermediate_size=d.get("intermediate_size", 1024),
      hidden_act=d.get("hidden_act", "gelu"), max_position_embeddings=d.get("max_position_embeddings", 512),
      type_vocab_size=d.get("type_vocab_size", 2), layer_norm_eps=d.get("layer_norm_eps", 1e-12),
      initializer_range=d.get("initializer_range", 0.02), generator_hidden_size=1.0, backbone="classic")


def hf_config_dict(cfg: ElectraConfig, architecture: str) -> dict:
  return {"architectures": [architecture], "model_type": "electra", "vocab_size": cfg.vocab_size,
          "embedding_size": cfg.embedding_size, "hidden_size": cfg.hidden_size,
          "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
          "intermediate_size": cfg.intermediate_size, "hidden_act": cfg.hidden_act,
          "hidden_dropout_prob": cfg.dropout_rate, "attention_probs_dropout_prob": 0.0,
          "max_position_embeddings": cfg.max_position_embeddings, "type_vocab_size": cfg.type_vocab_size,
          "layer_norm_eps": cfg.layer_norm_eps, "initializer_range": cfg.initializer_range, "pad_token_id": 0,
          "position_embedding_type": "absolute", "tie_word_embeddings": True, "summary_type": "first",
          "summary_use_proj": True, "summary_activation": "gelu", "summary_last_dropout": 0.1}


def _ln(take, key, n):
  return {"scale": take(key + ".weight", (n,)), "bias": take(key + ".bias", (n,))}


def _embeddings(cfg: ElectraConfig, take) -> dict:
  E, p = cfg.embedding_size, "electra.embeddings."
  return {"word_embeddings": {"embedding": take(p + "word_embeddings.weight", (cfg.vocab_size, E))},
          "position_embeddings": {"embedding": take(p + "position_embeddings.weight",
                                                    (cfg.max_position_embeddings, E))},
          "token_type_embeddings": {"embedding": take(p + "token_type_embeddings.weight", (cfg.type_vocab_size, E))},
          "LayerNorm": _ln(take, p + "LayerNorm", E)}


def _encoder(cfg: ElectraConfig, take) -> dict:
  d, H, Dh, I = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.intermediate_size  # noqa: E741
  enc = {}
  if cfg.has_projection:
    enc["embeddings_project"] = {"kernel": take("electra.embeddings_project.weight", (cfg.embedding_size, d), True),
                                 "bias": take("electra.embeddings_project.bias", (d,))}
  for i in range(cfg.num_layers):
    p = f"electra.encoder.layer.{i}."
    qkv = [take(p + f"attention.self.{n}.weight", (d, H, Dh), True, source=(d, d)) for n in ("query", "key", "value")]
    qkv_b = [take(p + f"attention.self.{n}.bias", (H, Dh), source=(d,)) for n in ("query", "key", "value")]
    enc[f"layers_{i}"] = {
        "attention": {"Wqkv": {"kernel": np.stack(qkv, 1), "bias": np.stack(qkv_b, 0)},
                      "Wo": {"kernel": take(p + "attention.output.dense.weight", (H, Dh, d), True, source=(d, d)),
                             "bias": take(p + "attention.output.dense.bias", (d,))}},
        "attention_norm": _ln(take, p + "attention.output.LayerNorm", d),
        "mlp": {"c_fc": {"kernel": take(p + "intermediate.dense.weight", (d, I), True),
                         "bias": take(p + "intermediate.dense.bias", (I,))},
                "c_proj": {"kernel": take(p + "output.dense.weight", (I, d), True),
                           "bias": take(p + "output.dense.bias", (d,))}},
        "output_norm": _ln(take, p + "output.LayerNorm", d)}
  return enc


def _linear(take, key, n_in, n_out):
  return {"kernel": take(key + ".weight", (n_in, n_out), True), "bias": take(key + ".bias", (n_out,))}


def params_from_state_dict(cfg: ElectraConfig, state: dict[str, np.ndarray], tower: str) -> dict:
  """Our standalone params ({embeddings, discriminator|generator}) from one Hugging Face state dict."""
  take = StateDictReader(state, "ELECTRA", ("position_ids",))
  d, E, V = cfg.hidden_size, cfg.embedding_size, cfg.vocab_size
  params = {"embeddings": _embeddings(cfg, take)}
  if tower == "discriminator":
    params["discriminator"] = {"encoder": _encoder(cfg, take), "discriminator_predictions": {
        "dense": _linear(take, "discriminator_predictions.dense", d, d),
        "dense_prediction": _linear(take, "discriminator_predictions.dense_prediction", d, 1)}}
  else:
    params["generator"] = {"encoder": _encoder(cfg, take), "generator_predictions": {
        "dense": _linear(take, "generator_predictions.dense", d, E),
        "LayerNorm": _ln(take, "generator_predictions.LayerNorm", E)},
        "lm_bias": take("generator_lm_head.bias", (V,))}
    if "generator_lm_head.weight" in state:
      take.mark_used("generator_lm_head.weight")
      if not np.array_equal(state["generator_lm_head.weight"], state["electra.embeddings.word_embeddings.weight"]):
        raise ValueError("generator_lm_head.weight differs from the word embeddings: untied heads are not supported")
  take.check_all_used()
  return params


def state_dict_from_params(cfg: ElectraConfig, params: dict, tower: str) -> dict[str, np.ndarray]:
  """The Hugging Face state dict of one tower (the tied generator_lm_head.weight omitted, as transformers saves)."""
  d, H, Dh = cfg.hidden_size, cfg.num_heads, cfg.head_dim
  f = lambda x: np.ascontiguousarray(np.asarray(x, np.float32))  # noqa: E731
  emb, t = params["embeddings"], params[tower]
  state = {f"electra.embeddings.{n}.weight": f(emb[n]["embedding"])
           for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")}
  state["electra.embeddings.LayerNorm.weight"] = f(emb["LayerNorm"]["scale"])
  state["electra.embeddings.LayerNorm.bias"] = f(emb["LayerNorm"]["bias"])

  def put_linear(key, p, n_in):
    state[key + ".weight"] = f(np.asarray(p["kernel"]).reshape(n_in, -1).T)
    state[key + ".bias"] = f(np.asarray(p["bias"]).reshape(-1))

  def put_ln(key, p):
    state[key + ".weight"], state[key + ".bias"] = f(p["scale"]), f(p["bias"])

  enc = t["encoder"]
  if cfg.has_projection:
    put_linear("electra.embeddings_project", enc["embeddings_project"], cfg.embedding_size)
  for i in range(cfg.num_layers):
    p, q = f"electra.encoder.layer.{i}.", enc[f"layers_{i}"]
    wqkv, bqkv = np.asarray(q["attention"]["Wqkv"]["kernel"]), np.asarray(q["attention"]["Wqkv"]["bias"])
    for j, n in enumerate(("query", "key", "value")):
      put_linear(p + f"attention.self.{n}", {"kernel": wqkv[:, j], "bias": bqkv[j]}, d)
    put_linear(p + "attention.output.dense", q["attention"]["Wo"], H * Dh)
    put_ln(p + "attention.output.LayerNorm", q["attention_norm"])
    put_linear(p + "intermediate.dense", q["mlp"]["c_fc"], d)
    put_linear(p + "output.dense", q["mlp"]["c_proj"], cfg.intermediate_size)
    put_ln(p + "output.LayerNorm", q["output_norm"])
  if tower == "discriminator":
    put_linear("discriminator_predictions.dense", t["discriminator_predictions"]["dense"], d)
    put_linear("discriminator_predictions.dense_prediction", t["discriminator_predictions"]["dense_prediction"], d)
  else:
    put_linear("generator_predictions.dense", t["generator_predictions"]["dense"], d)
    put_ln("generator_predictions.LayerNorm", t["generator_predictions"]["LayerNorm"])
    state["generator_lm_head.bias"] = f(t["lm_bias"])
  return state


def _tower_of(config: dict, state: dict, path: str) -> str:
  for arch in config.get("architectures") or []:
    if arch in _ARCH:
      return _ARCH[arch]
  if any(k.startswith("discriminator_predictions.") for k in state):
    return "discriminator"
  if any(k.startswith("generator_predictions.") for k in state):
    return "generator"
  raise ValueError(f"{path}: neither ElectraForPreTraining nor ElectraForMaskedLM weights")


def load_electra(path: str) -> tuple[ElectraForPreTraining | ElectraForMaskedLM, dict]:
  """Reads a Hugging Face ElectraForPreTraining (discriminator) or ElectraForMaskedLM (generator) directory."""
  config, state = read_hf_dir(path)
  cfg = electra_config(config)
  tower = _tower_of(config, state, path)
  module = ElectraForPreTraining(cfg) if tower == "discriminator" else ElectraForMaskedLM(cfg)
  return module, params_from_state_dict(cfg, state, tower)


def save_electra(model: ElectraForPreTraining | ElectraForMaskedLM, params: dict, path: str) -> None:
  """Writes a directory that `transformers.ElectraForPreTraining` / `ElectraForMaskedLM.from_pretrained` loads."""
  tower = "discriminator" if isinstance(model, ElectraForPreTraining) else "generator"
  if model.cfg.backbone != "classic":
    raise ValueError("only the classic backbone has a Hugging Face ELECTRA equivalent (model.backbone='classic')")
  write_hf_dir(path, state_dict_from_params(model.cfg, params, tower),
               hf_config_dict(model.cfg, "ElectraForPreTraining" if tower == "discriminator" else "ElectraForMaskedLM"))


def load_electra_pretraining(discriminator_dir: str, generator_dir: str) -> tuple[ElectraPretrainingModel, dict]:
  """The joint model from a discriminator and a generator directory (e.g. google/electra-base-{discriminator,
  generator}); the generator's size must follow the generator sizing rule of `ElectraConfig.generator`."""
  (d_module, d_params), (g_module, g_params) = load_electra(discriminator_dir), load_electra(generator_dir)
  if not isinstance(d_module, ElectraForPreTraining) or not isinstance(g_module, ElectraForMaskedLM):
    raise ValueError(f"{discriminator_dir} must hold ElectraForPreTraining and {generator_dir} ElectraForMaskedLM")
  d, g = d_module.cfg, g_module.cfg
  cfg = dataclasses.replace(d, generator_hidden_size=g.hidden_size / d.hidden_size,
                            generator_layers=g.num_layers / d.num_layers)
  want = cfg.generator()
  for field in ("embedding_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "type_vocab_size"):
    if getattr(want, field) != getattr(g, field):
      raise ValueError(f"generator {field}={getattr(g, field)} does not follow the sizing rule for this "
                       f"discriminator (expected {getattr(want, field)})")
  for a, b in zip(_leaves(d_params["embeddings"]), _leaves(g_params["embeddings"])):
    if not np.allclose(a, b, atol=1e-6):
      raise ValueError("the generator's and discriminator's embeddings differ: they are one shared tensor in "
                       "ELECTRA pretraining (use the pair released together)")
  return ElectraPretrainingModel(cfg), {"embeddings": d_params["embeddings"], "generator": g_params["generator"],
                                        "discriminator": d_params["discriminator"]}


def save_electra_pretraining(model: ElectraPretrainingModel, params: dict, discriminator_dir: str,
                             generator_dir: str) -> None:
  """Writes the joint model as the two Hugging Face directories it is released as."""
  cfg = model.cfg
  save_electra(ElectraForPreTraining(cfg), {"embeddings": params["embeddings"],
                                            "discriminator": params["discriminator"]}, discriminator_dir)
  save_electra(ElectraForMaskedLM(cfg.generator()), {"embeddings": params["embeddings"],
                                                     "generator": params["generator"]}, generator_dir)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]
