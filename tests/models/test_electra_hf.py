"""ELECTRA checkpoint parity with Hugging Face `transformers` (ElectraForPreTraining / ElectraForMaskedLM), both
ways, on random unit-scale weights, plus the joint loader (shared embeddings) and injected-bug checks."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.electra import ElectraForMaskedLM, ElectraForPreTraining
from models.hf import load_electra, load_electra_pretraining, save_electra, save_electra_pretraining
from tests.helpers import require

torch = require("torch")
transformers = require("transformers")

V = 97
CONFIGS = [  # (HF kwargs, sequence length): E != d (projection), E == d, gelu variants, several head counts
    (dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64), 23),
    (dict(embedding_size=24, hidden_size=24, num_hidden_layers=3, num_attention_heads=3, intermediate_size=40,
          max_position_embeddings=40), 31),
    (dict(embedding_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=32,
          hidden_act="gelu_new"), 17),
]


def _unit_scale(model, seed):
  torch.manual_seed(seed)
  with torch.no_grad():   # with the 0.02 init a wrong GELU or a missing bias would hide under 1e-4
    for name, p in model.named_parameters():
      if "embeddings" in name and "project" not in name:
        p.normal_(0, 1.0)
      elif p.ndim == 2:
        p.normal_(0, 1.0 / np.sqrt(p.shape[1]))
      elif "LayerNorm" in name and name.endswith("weight"):
        p.copy_(1 + 0.1 * torch.randn_like(p))
      else:
        p.normal_(0, 0.1)
  return model


def _hf(cls, kwargs, seed):
  torch.manual_seed(seed)
  cfg = transformers.ElectraConfig(vocab_size=V, **kwargs)
  return _unit_scale(cls(cfg).eval(), seed)


def _batch(seq, seed, mixed_types=False):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, V, (3, seq))
  mask = np.ones((3, seq), np.int64)
  mask[1, seq - 4:] = 0
  mask[2, seq // 2:] = 0
  types = (rng.random((3, seq)) < 0.5).astype(np.int64) if mixed_types else np.zeros((3, seq), np.int64)
  return ids, mask, types


def _ref(model, ids, mask, types):
  with torch.no_grad():
    return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                 token_type_ids=torch.tensor(types)).logits.numpy()


def _ours(model, params, ids, mask, types):
  return np.asarray(model.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                                token_type_ids=jnp.asarray(types)))


@pytest.fixture(scope="module", params=[(c, k) for c in range(len(CONFIGS)) for k in ("disc", "gen")],
                ids=lambda p: f"cfg{p[0]}-{p[1]}")
def pair(request, tmp_path_factory):
  c, kind = request.param
  kwargs, seq = CONFIGS[c]
  cls = transformers.ElectraForPreTraining if kind == "disc" else transformers.ElectraForMaskedLM
  hf = _hf(cls, kwargs, c)
  path = str(tmp_path_factory.mktemp("electra"))
  hf.save_pretrained(path)
  model, params = load_electra(path)
  return hf, model, params, seq, tmp_path_factory


@pytest.mark.parametrize("mixed_types", [False, True])
def test_logits_match_hugging_face_on_real_positions(pair, mixed_types):
  hf, model, params, seq, _ = pair
  assert isinstance(model, ElectraForPreTraining if isinstance(hf, transformers.ElectraForPreTraining)
                    else ElectraForMaskedLM)
  ids, mask, types = _batch(seq, 0, mixed_types)
  ref, ours = _ref(hf, ids, mask, types), _ours(model, params, ids, mask, types)
  real = mask.astype(bool)
  assert np.ptp(ref[real]) > 0.3      # logits vary: weights are at unit scale, not near zero
  np.testing.assert_allclose(ours[real], ref[real], atol=1e-4 * np.abs(ref[real]).max(), rtol=0)


def test_saved_checkpoint_reproduces_our_logits_in_hugging_face(pair):
  hf, model, params, seq, factory = pair
  params = jax.tree.map(lambda p: np.asarray(p) * 1.01 + 0.01, params)
  path = str(factory.mktemp("saved"))
  save_electra(model, params, path)
  again_hf = type(hf).from_pretrained(path).eval()
  ids, mask, types = _batch(seq, 1, True)
  real = mask.astype(bool)
  ours = _ours(model, params, ids, mask, types)
  np.testing.assert_allclose(ours[real], _ref(again_hf, ids, mask, types)[real],
                             atol=1e-4 * np.abs(ours[real]).max(), rtol=0)
  _, reloaded = load_electra(path)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reloaded)):
    np.testing.assert_array_equal(np.asarray(a, np.float32), b)


def test_injected_bugs_break_parity(pair):
  hf, model, params, seq, _ = pair
  ids, mask, types = _batch(seq, 0, True)
  real = mask.astype(bool)
  ref = _ref(hf, ids, mask, types)[real]
  tol = 1e-4 * np.abs(ref).max()          # the parity tolerance: each bug must fail the parity test
  cfg = model.cfg
  other_gelu = "gelu" if cfg.hidden_act != "gelu" else "gelu_new"
  for bug in (dict(hidden_act=other_gelu), dict(layer_norm_eps=1e-2)):
    wrong = type(model)(dataclasses.replace(cfg, **bug))
    assert np.abs(_ours(wrong, params, ids, mask, types)[real] - ref).max() > tol, bug
  no_types = _ours(model, params, ids, mask, np.zeros_like(types))[real]    # token types ignored
  assert np.abs(no_types - ref).max() > tol


def test_joint_loader_shares_embeddings_and_reproduces_both_towers(tmp_path):
  d_kwargs = dict(embedding_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=1,
                  intermediate_size=128)
  g_kwargs = dict(d_kwargs, hidden_size=16, intermediate_size=64)     # 1/4 of D: 16 wide, 1 head, FFN 4*16
  disc = _hf(transformers.ElectraForPreTraining, d_kwargs, 7)
  gen = _hf(transformers.ElectraForMaskedLM, g_kwargs, 8)
  gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())   # one tensor in the original
  disc.save_pretrained(tmp_path / "d")
  gen.save_pretrained(tmp_path / "g")
  model, params = load_electra_pretraining(str(tmp_path / "d"), str(tmp_path / "g"))
  assert model.cfg.generator().hidden_size == 16
  ids, mask, types = _batch(19, 2)
  ids_j, seg = jnp.asarray(ids), jnp.asarray(mask, jnp.int32)
  pos = jnp.broadcast_to(jnp.arange(19), ids.shape)
  real = mask.astype(bool)
  g = np.asarray(model.apply({"params": params}, ids_j, seg, pos, method="generator_logits"))
  d = np.asarray(model.apply({"params": params}, ids_j, seg, pos, method="discriminator_logits"))
  for ours, ref in ((g, _ref(gen, ids, mask, types)), (d, _ref(disc, ids, mask, types))):
    np.testing.assert_allclose(ours[real], ref[real], atol=1e-4 * np.abs(ref[real]).max(), rtol=0)
  save_electra_pretraining(model, params, str(tmp_path / "d2"), str(tmp_path / "g2"))
  _, again = load_electra_pretraining(str(tmp_path / "d2"), str(tmp_path / "g2"))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
    np.testing.assert_array_equal(np.asarray(a), b)
  with torch.no_grad():
    gen.electra.embeddings.word_embeddings.weight.add_(0.5)
  gen.save_pretrained(tmp_path / "g3")
  with pytest.raises(ValueError, match="shared"):
    load_electra_pretraining(str(tmp_path / "d"), str(tmp_path / "g3"))
