"""ModernBERT checkpoint parity with Hugging Face `transformers`, both ways, on random unit-scale weights."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.hf import load_modernbert, modernbert_config, save_modernbert
from models.modernbert import ModernBertForMaskedLM
from tests.helpers import require

torch = require("torch")
transformers = require("transformers")

CONFIGS = [  # (HF kwargs, sequence length): window matters (S > local_attention), odd lengths, every n = 1, 2, 3
    (dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=40,
          global_attn_every_n_layers=2, local_attention=8), 37),
    (dict(hidden_size=48, num_hidden_layers=4, num_attention_heads=3, intermediate_size=64,
          global_attn_every_n_layers=3, local_attention=6, global_rope_theta=1000.0, local_rope_theta=50.0), 29),
    (dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=16,
          global_attn_every_n_layers=1, local_attention=4, hidden_activation="gelu_pytorch_tanh"), 21),
]


def _hf(kwargs, seed, vocab_size=101):
  torch.manual_seed(seed)
  cfg = transformers.ModernBertConfig(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                      cls_token_id=1, sep_token_id=2, **kwargs)
  model = transformers.ModernBertForMaskedLM(cfg).eval()
  with torch.no_grad():   # unit scale: with the 0.02 init, a wrong GELU or window would hide under 1e-4
    for name, p in model.named_parameters():
      if p.ndim == 2:
        p.normal_(0, 1.0 / np.sqrt(p.shape[1]))
      elif "norm" in name:
        p.uniform_(0.5, 1.5)
      else:
        p.normal_(0, 0.5)
  return model


def _batch(seq, vocab, seed):
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, vocab, (3, seq))
  mask = np.ones((3, seq), np.int64)
  mask[1, seq - 5:] = 0          # right padding, shorter than a window
  mask[2, seq // 3:] = 0         # more pads than the local half-window
  return ids, mask


def _hf_logits(model, ids, mask):
  with torch.no_grad():
    return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


@pytest.fixture(scope="module", params=range(len(CONFIGS)))
def pair(request, tmp_path_factory):
  kwargs, seq = CONFIGS[request.param]
  hf = _hf(kwargs, request.param)
  path = str(tmp_path_factory.mktemp("modernbert"))
  hf.save_pretrained(path)
  model, params = load_modernbert(path)
  return hf, model, params, seq, tmp_path_factory


def _ours(model, params, ids, mask):
  return np.asarray(model.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))


def test_logits_match_hugging_face_on_real_positions(pair):
  hf, model, params, seq, _ = pair
  ids, mask = _batch(seq, 101, 0)
  ours, ref = _ours(model, params, ids, mask), _hf_logits(hf, ids, mask)
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], ref[real], atol=1e-4, rtol=0)
  assert np.abs(ref).max() > 1.0
  # The memory-efficient path (banded local layers, query-chunked global layers) gives the same logits.
  chunked = ModernBertForMaskedLM(dataclasses.replace(model.cfg, attention_impl="chunked"))
  np.testing.assert_allclose(_ours(chunked, params, ids, mask)[real], ref[real], atol=1e-4, rtol=0)


def test_saved_checkpoint_reproduces_our_logits_in_hugging_face(pair):
  _, model, params, seq, factory = pair
  params = jax.tree.map(lambda p: p * 1.01 + 0.01, params)
  path = str(factory.mktemp("saved"))
  save_modernbert(model, params, path)
  hf = transformers.ModernBertForMaskedLM.from_pretrained(path).eval()
  ids, mask = _batch(seq, 101, 1)
  real = mask.astype(bool)
  np.testing.assert_allclose(_ours(model, params, ids, mask)[real], _hf_logits(hf, ids, mask)[real], atol=1e-4,
                             rtol=0)
  _, again = load_modernbert(path)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
    np.testing.assert_array_equal(np.asarray(a, np.float32), b)


def test_injected_bugs_break_parity(pair):
  hf, model, params, seq, _ = pair
  ids, mask = _batch(seq, 101, 0)
  real = mask.astype(bool)
  ref = _hf_logits(hf, ids, mask)[real]
  cfg = model.cfg
  tanh = "gelu" if cfg.hidden_activation != "gelu" else "gelu_pytorch_tanh"
  bugs = [dict(hidden_activation=tanh), dict(global_rope_theta=cfg.local_rope_theta)]
  if not all(cfg.is_global(i) for i in range(cfg.num_layers)):   # a window bug needs a sliding-window layer
    bugs.append(dict(local_attention=cfg.local_attention + 2))
  for bug in bugs:
    wrong = ModernBertForMaskedLM(dataclasses.replace(cfg, **bug))
    assert np.abs(_ours(wrong, params, ids, mask)[real] - ref).max() > 1e-3, bug
  swapped = jax.tree_util.tree_map_with_path(
      lambda path, x: x[:, ::-1] if "Wi" in jax.tree_util.keystr(path) else x, params)   # GeGLU halves swapped
  assert np.abs(_ours(model, swapped, ids, mask)[real] - ref).max() > 1e-3


def test_v4_and_v5_config_spellings_normalise_identically():
  v4 = dict(vocab_size=50368, hidden_size=768, num_hidden_layers=22, num_attention_heads=12,
            intermediate_size=1152, global_attn_every_n_layers=3, global_rope_theta=160000.0,
            local_rope_theta=10000.0, local_attention=128, layer_norm_eps=1e-12, norm_eps=1e-5)
  hf_v5 = transformers.ModernBertConfig(**{k: v for k, v in v4.items() if k != "layer_norm_eps"}).to_dict()
  a, b = modernbert_config(v4), modernbert_config(hf_v5)
  assert a == b
  assert a.norm_eps == 1e-5 and a.half_window == 64
  assert [a.is_global(i) for i in range(6)] == [True, False, False, True, False, False]


@pytest.mark.parametrize("pair", [0], indirect=True)   # one config: the packed path does not depend on the shape
def test_packed_path_equals_padded_path_per_document(pair):
  _, model, params, _, _ = pair
  rng = np.random.default_rng(3)
  docs = [rng.integers(3, 101, n) for n in (9, 14, 6)]
  T = sum(map(len, docs)) + 3
  packed, seg, pos = np.zeros((1, T), np.int32), np.zeros((1, T), np.int32), np.zeros((1, T), np.int32)
  o = 0
  for i, d in enumerate(docs):
    packed[0, o:o + len(d)], seg[0, o:o + len(d)], pos[0, o:o + len(d)] = d, i + 1, np.arange(len(d))
    o += len(d)
  out = np.asarray(model.apply({"params": params}, packed, seg, pos))
  padded = np.zeros((3, 16), np.int32)
  mask = np.zeros((3, 16), np.int32)
  for i, d in enumerate(docs):
    padded[i, :len(d)], mask[i, :len(d)] = d, 1
  ref = _ours(model, params, padded, mask)
  o = 0
  for i, d in enumerate(docs):
    np.testing.assert_allclose(out[0, o:o + len(d)], ref[i, :len(d)], atol=1e-5, rtol=0)
    o += len(d)


@pytest.mark.slow   # ~35 s; the default suite's transformers pipeline round trip (tests/data/test_real_data.py) imports
# and exports through the same commands
def test_convert_command_round_trips_through_a_training_run(tmp_path):
  """HF dir -> `launch.py --mode=import_hf` -> weights-only init of a run -> `export` -> HF loads the trained
  weights and reproduces our logits."""
  import subprocess
  import sys

  from configs import modernbert_mlm
  from tests.helpers import ROOT, subprocess_env
  from train.hf_convert import export_hf
  from train.loop import train
  hf = _hf(CONFIGS[0][0], 0, vocab_size=320)   # the byte vocabulary (260) rounded up to 64, as our runs do
  src = str(tmp_path / "hf")
  hf.save_pretrained(src)
  imported = str(tmp_path / "imported")
  r = subprocess.run([sys.executable, "launch.py", "--mode=import_hf", "--config=configs/modernbert_mlm.py",
                      f"--hf_dir={src}", f"--workdir={imported}"], capture_output=True, text=True, cwd=ROOT,
                     env=subprocess_env())
  assert r.returncode == 0 and '"ok": true' in r.stdout, r.stderr[-2000:]
  c = modernbert_mlm.get_config()
  c.unlock()
  m = c.model
  m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 32, 3, 2, 40
  m.global_attn_every_n_layers, m.local_attention, m.vocab_size = 2, 8, 320
  c.data.vocab, c.data.seq_len, c.data.max_doc_chars = "byte", 32, 256
  c.decode.prompts = ("import [MASK]",)          # the default prompts are longer than 32 bytes
  c.train.batch_size, c.train.num_steps, c.train.eval_every = 8, 2, 0
  c.checkpoint.init_from = imported
  run_dir = str(tmp_path / "run")
  train(c, run_dir)
  out = str(tmp_path / "exported")
  export_hf(run_dir, out)
  back = transformers.ModernBertForMaskedLM.from_pretrained(out).eval()
  model, params = load_modernbert(out)
  ids, mask = _batch(21, 320, 2)
  real = mask.astype(bool)
  np.testing.assert_allclose(_ours(model, params, ids, mask)[real], _hf_logits(back, ids, mask)[real], atol=1e-4)
  # Training moved the weights away from the imported ones, and the export carries the trained ones.
  assert np.abs(_hf_logits(back, ids, mask)[real] - _hf_logits(hf, ids, mask)[real]).max() > 1e-4


def test_an_import_configures_itself_decodes_and_refuses_a_partial_load(tmp_path, capsys):
  """`--mode=import_hf` with the tiny config and no model.* flag: the import's model is read from config.json (a
  non-default shape: 24 wide, 4 heads, a window of 4 on every layer, tanh GELU), `--mode=decode` on the import fills
  the mask with Hugging Face's own top byte, a fine-tune from it adopts the shape, and one with another width is
  refused in one line (checkpoint.allow_partial: tests/train/test_resume.py)."""
  from data.vocab import ByteVocabulary
  from tests.helpers import tiny_config
  from train.errors import ConfigError
  from train.hf_convert import import_hf
  from train.modes import run
  kwargs, _ = CONFIGS[2]
  hf = _hf(kwargs, 2, vocab_size=320)
  src, imported = str(tmp_path / "hf"), str(tmp_path / "imported")
  hf.save_pretrained(src)
  message = import_hf(tiny_config(), [src], imported)
  assert "model.hidden_size=24" in message and "model.hidden_activation='gelu_pytorch_tanh'" in message
  [text] = run(tiny_config(), imported, "decode", text="import [MASK]")
  vocab = ByteVocabulary()
  ids = [vocab.cls_id, *vocab.encode("import "), vocab.mask_id, vocab.sep_id]
  logits = _hf_logits(hf, np.array([ids]), np.ones((1, len(ids)), np.int64))[0, ids.index(vocab.mask_id)]
  top = vocab.first_normal_id + int(np.argmax(logits[vocab.first_normal_id:vocab.size]))
  assert text.split("\n  [MASK] 1: ")[1].startswith(f"{vocab.decode([top])!r} ")
  fine_tune = {"checkpoint.init_from": imported, "train.num_steps": 1, "train.eval_every": 0}
  capsys.readouterr()
  run(tiny_config(**fine_tune), str(tmp_path / "adopted"), overrides={})
  [adopted] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("checkpoint.init_from=")]
  assert "model.hidden_size=24" in adopted and "model.local_attention=4" in adopted
  with pytest.raises(ConfigError, match=r"would leave 9\d% of the weights fresh .*; match its model\.\* keys"):
    run(tiny_config(**fine_tune, **{"model.hidden_size": 32}), str(tmp_path / "partial"),
        overrides={"model.hidden_size": 32})
