"""Real data and real tokenizers: Hugging Face tokenizers as vocabularies, JSONL / Parquet / text corpora,
`python -m data.prepare` shards, training from `tokenized:` shards (exact resume), and exported checkpoints that
`transformers.pipeline` reads back with the same predictions as our decoding.

The tokenizers are trained here with `tokenizers` on the embedded corpus and saved by `transformers` (the files a
released checkpoint ships); no file is downloaded.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data import hf_tokenizer, readers, tokenized
from data.corpus import load_corpus
from tests.helpers import ROOT, require, subprocess_env, time_slice, tiny_config, train_losses

transformers = require("transformers")
torch = require("torch")

WORDPIECE_SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
MODEL_VOCAB = 512   # every tokenizer here has at most this many ids; the HF models are built this wide


@pytest.fixture(scope="module")
def texts():
  return list(load_corpus("stdlib", 400).train[:1500])


@pytest.fixture(scope="module")
def wordpiece_dir(texts, tmp_path_factory):
  """A BERT-style WordPiece tokenizer (specials first, [CLS] text [SEP] framing) saved as transformers saves it."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
  tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=False)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece()
  tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=480, special_tokens=WORDPIECE_SPECIALS))
  tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1),
                                                                                              ("[SEP]", 2)])
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", cls_token="[CLS]",
                                              sep_token="[SEP]", mask_token="[MASK]", unk_token="[UNK]")
  path = tmp_path_factory.mktemp("wordpiece")
  fast.save_pretrained(path)
  return str(path)


@pytest.fixture(scope="module")
def bpe_dir(texts, tmp_path_factory):
  """A GPT-2-style byte-level BPE: no pad or mask token, <|endoftext|> is the last id (bos = eos)."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.add_special_tokens(["<|endoftext|>"])
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                              eos_token="<|endoftext|>", unk_token="<|endoftext|>")
  path = tmp_path_factory.mktemp("bpe")
  fast.save_pretrained(path)
  return str(path)


def test_hf_tokenizer_roles_and_ids_are_the_checkpoints(wordpiece_dir, bpe_dir, texts):
  wp, bpe = hf_tokenizer.load(wordpiece_dir), hf_tokenizer.load(bpe_dir)
  ref_wp = transformers.AutoTokenizer.from_pretrained(wordpiece_dir)
  ref_bpe = transformers.AutoTokenizer.from_pretrained(bpe_dir)
  assert (wp.pad_id, wp.cls_id, wp.sep_id, wp.mask_id) == (ref_wp.pad_token_id, ref_wp.cls_token_id,
                                                           ref_wp.sep_token_id, ref_wp.mask_token_id) == (0, 1, 2, 3)
  assert wp.first_normal_id == 5 and wp.size == len(ref_wp)
  eot = ref_bpe.eos_token_id
  assert eot == len(ref_bpe) - 1 and bpe.size == len(ref_bpe)      # GPT-2's layout: the special token is last
  assert (bpe.cls_id, bpe.sep_id, bpe.pad_id) == (eot, eot, eot) and bpe.special_ids == (eot,)
  assert bpe.first_normal_id == 0 and not bpe.has_mask
  with pytest.raises(ValueError, match="no mask token"):
    bpe.mask_id
  for t in texts[:40]:
    assert wp.encode(t) == ref_wp(t, add_special_tokens=False)["input_ids"]
    assert bpe.encode(t) == ref_bpe(t, add_special_tokens=False)["input_ids"]
  # Batch encoding (data.prepare) = one by one; our [CLS] ... [SEP] framing = the tokenizer's own post-processor.
  assert wp.encode_batch(texts[:40]) == [wp.encode(t) for t in texts[:40]]
  from data.sources import framed_rows
  assert framed_rows(wp, texts[:3], 10_000, masks=False) == [ref_wp(t)["input_ids"] for t in texts[:3]]
  # "[MASK]" in a prompt is the checkpoint's mask token, tokenized in context as transformers does.
  prompt = "import [MASK] as np\nx = np.[MASK](3)"
  assert wp.encode_with_masks(prompt) == ref_wp(prompt, add_special_tokens=False)["input_ids"]
  assert wp.decode(wp.encode_with_masks(prompt)) == ref_wp.decode(ref_wp(prompt, add_special_tokens=False)[
      "input_ids"]) == "import [MASK] as np x = np. [MASK] ( 3 )"
  # A masked-LM family refuses a tokenizer without a mask token by name, before anything is built.
  from train.experiment import build_experiment
  with pytest.raises(ValueError, match=r"has no mask token .* which this family needs"):
    build_experiment(tiny_config(**{"data.vocab": f"hf:{bpe_dir}"}))


@pytest.fixture(scope="module")
def spm_vocab(texts, tmp_path_factory):
  """A SentencePiece model as the default job trains one (data.vocab=spm), small."""
  from data.vocab import SentencePieceVocabulary, train_sentencepiece
  return SentencePieceVocabulary(train_sentencepiece(texts, 400, str(tmp_path_factory.mktemp("spm") / "spm")))


@pytest.mark.parametrize("kind", ["byte", "spm"])
@pytest.mark.parametrize("framing", [hf_tokenizer.MLM_FRAMING, hf_tokenizer.CAUSAL_FRAMING])
def test_exported_tokenizer_reads_text_as_the_vocabulary_does(texts, spm_vocab, tmp_path, kind, framing):
  """A byte or SentencePiece run's export: transformers' AutoTokenizer on the written files encodes, frames (as the
  family does) and decodes every text as our vocabulary does (non-ASCII, whitespace runs), and config.json gets the
  roles' ids. (The one exception, as for every transformers tokenizer: a literal special token's text, "<s>",
  "[MASK]", is read as that token.)"""
  from data.vocab import ByteVocabulary
  ours = ByteVocabulary() if kind == "byte" else spm_vocab
  (tmp_path / "config.json").write_text("{}")
  assert "wrote tokenizer files" in hf_tokenizer.export_tokenizer(ours, kind, [tmp_path], model_max_length=128,
                                                                  framing=framing)
  ref = transformers.AutoTokenizer.from_pretrained(tmp_path)
  assert (ref.pad_token_id, ref.cls_token_id, ref.sep_token_id, ref.mask_token_id) == (0, 1, 2, 3)
  frame = {"cls": [1], "sep": [2]}
  for t in texts[:300] + ["naïve café — 日本語 🙂\t\r\n  x", " leading and trailing  ", " " * 20 + "x", "<0x0A> <x>"]:
    ids = ours.encode(t)
    assert ref(t, add_special_tokens=False)["input_ids"] == ids
    assert ref(t)["input_ids"] == [i for r in framing for i in (ids if r == "$A" else frame[r])]
    assert ref.decode(ids) == ours.decode(ids) == t
  prompt = "import [MASK]\nprint([MASK].getcwd())"
  assert ref(prompt, add_special_tokens=False)["input_ids"] == ours.encode_with_masks(prompt)
  assert json.loads((tmp_path / "config.json").read_text()) == {"pad_token_id": 0, "bos_token_id": 1,
                                                                "eos_token_id": 2}


def _write_files(texts, root: pathlib.Path):
  """a.jsonl (with an empty line), b.parquet (3 row groups), c.txt: the documents each holds."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  a, b, c = texts[:600], texts[600:900], texts[900:960]
  with open(root / "a.jsonl", "w") as f:
    for i, t in enumerate(a):
      f.write(json.dumps({"id": i, "text": t}) + ("\n\n" if i == 7 else "\n"))
  pq.write_table(pa.table({"text": b, "n": list(range(len(b)))}), root / "b.parquet", row_group_size=100)
  (root / "c.txt").write_text("\n\n".join(c))
  return a, b, [d for d in readers.read_unit(readers.Unit(str(root / "c.txt")), max_doc_chars=2048)]


def test_document_files_read_whole_or_in_units(texts, tmp_path):
  a, b, c = _write_files(texts, tmp_path)
  jsonl = tmp_path / "a.jsonl"
  units = readers.units(jsonl, unit_bytes=20_000)
  assert len(units) > 5      # byte ranges cut lines; each line is read once, by the unit its first byte is in
  assert [d for u in units for d in readers.read_unit(u)] == a
  assert [d for u in readers.units(tmp_path / "b.parquet") for d in readers.read_unit(u)] == b
  corpus = load_corpus(f"{tmp_path}/*.jsonl,{tmp_path / 'b.parquet'}", 2048, validation_percent=10)
  assert sorted(corpus.train + corpus.validation) == sorted(a + b)
  assert all(readers.is_validation(d, 10) for d in corpus.validation) and len(corpus.validation) > 20
  assert not any(readers.is_validation(d, 10) for d in corpus.train)
  (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text field"}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl at byte 15: no string field 'text'"):
    load_corpus(str(tmp_path / "bad.jsonl"), 2048)


@pytest.fixture(scope="module")
def prepared(texts, wordpiece_dir, tmp_path_factory):
  """data.prepare of a.jsonl (cut into 16 KiB units), b.parquet and c.txt with 2 worker processes."""
  from data.prepare import prepare
  root = tmp_path_factory.mktemp("files")
  docs = _write_files(texts, root)
  out = root / "tok"
  index = prepare([str(root / "*.jsonl"), str(root / "b.parquet"), str(root / "c.txt")], f"hf:{wordpiece_dir}",
                  str(out), workers=2, unit_bytes=16_384, validation_percent=10, progress=False)
  return root, out, index, docs


def test_prepare_writes_the_documents_token_for_token(prepared, wordpiece_dir):
  root, out, index, (a, b, c) = prepared
  vocab = hf_tokenizer.load(wordpiece_dir)
  assert index["vocab"] == {"spec": f"hf:{wordpiece_dir}", "fingerprint": vocab.fingerprint, "size": vocab.size}
  assert index["split_rule"] == readers.SPLIT_RULE and index["dtype"] == "uint16"
  docs = a + b + c          # the units' order: files sorted by path, units in file order
  corpus = tokenized.load(str(out))
  for split, want in (("train", [d for d in docs if not readers.is_validation(d, 10)]),
                      ("validation", [d for d in docs if readers.is_validation(d, 10)])):
    got = getattr(corpus, split)
    assert len(got) == len(want) == index["splits"][split]["documents"]
    assert [list(got[i]) for i in range(len(got))] == [vocab.encode(d) for d in want]
    assert index["splits"][split]["tokens"] == sum(len(vocab.encode(d)) for d in want)
    assert got.max_doc_tokens == max(len(vocab.encode(d)) for d in want)


def test_prepare_command_restarts_where_it_stopped(prepared, wordpiece_dir):
  """An interrupted prepare (one unit's shards and done-marker missing) redoes that unit only, through the CLI;
  other settings on the same --output are refused with one line."""
  root, out, index, _ = prepared
  done = sorted((out / "done").glob("*.json"))
  victim = json.loads(done[3].read_text())
  for split in ("train", "validation"):
    if victim[split].get("shard"):
      (out / "shards" / victim[split]["shard"]).unlink()
  done[3].unlink()
  (out / "index.json").unlink()
  kept = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
  cmd = [sys.executable, "-m", "data.prepare", f"--input={root}/*.jsonl", f"--input={root / 'b.parquet'}",
         f"--input={root / 'c.txt'}", f"--vocab=hf:{wordpiece_dir}", f"--output={out}", "--workers=1",
         "--validation_percent=10", "--unit_mb=0.015625"]     # the fixture's 16 KiB units
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=subprocess_env(), timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"wrote {out}: train {index['splits']['train']['documents']:,} documents" in r.stdout
  assert json.loads((out / "index.json").read_text()) == index
  now = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
  assert {n for n in now if now[n] != kept.get(n)} == {victim[s]["shard"] for s in ("train", "validation")
                                                       if victim[s].get("shard")}
  r = subprocess.run(cmd[:-2] + ["--validation_percent=5", "--unit_mb=0.015625"], capture_output=True, text=True,
                     cwd=ROOT, env=subprocess_env(), timeout=120)
  assert r.returncode != 0 and r.stderr.strip().splitlines()[-1] == (
      f"error: --output={out} holds a prepare run with other settings (validation_percent); use a fresh --output "
      "or the same settings to resume it")


def _tokenized_config(out, wordpiece_dir):
  return tiny_config(**{"data.corpus": f"tokenized:{out}", "data.vocab": f"hf:{wordpiece_dir}",
                        "data.packing": "first_fit", "data.seq_len": 48, "model.local_attention": 16,
                        "decode.prompts": (), "train.eval_every": 0})


def test_tokenized_data_position_is_checkpointed_and_restored_exactly(prepared, wordpiece_dir, tmp_path):
  """The trainer's data source over tokenized: shards, its position saved in a real orbax checkpoint (grain's
  handler, as the trainer saves it) and restored into a fresh iterator: the next batches are the uninterrupted
  iterator's, row for row."""
  import jax.numpy as jnp

  from data.sources import Documents
  from train import checkpoint as ckpt_lib
  _, out, _, _ = prepared
  config = _tokenized_config(out, wordpiece_dir)
  source = Documents(config.data, hf_tokenizer.load(wordpiece_dir))
  it = source.train_iterator(global_batch=8, seed=0)
  for _ in range(5):
    next(it)
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(5, {"step": jnp.zeros(())}, it, {})
  expected = [next(it) for _ in range(4)]
  _, fresh = ckpt.restore(5, {"step": jnp.zeros(())}, source.train_iterator(global_batch=8, seed=0))
  ckpt.close()
  for want in expected:
    got = next(fresh)
    assert sorted(got) == ["positions", "segment_ids", "tokens"]
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])
  assert len({e["tokens"].tobytes() for e in expected}) == 4 and (expected[0]["segment_ids"] == 0).any()


@pytest.mark.slow   # three tiny training runs; the default suite checks the data position through orbax above
def test_training_on_tokenized_shards_resumes_with_the_same_batches(prepared, wordpiece_dir, tmp_path):
  """data.corpus=tokenized:DIR through the generic trainer (first-fit packing): a run killed after step 3 and
  restarted continues with exactly the uninterrupted run's batches (bit-identical losses and parameters)."""
  import jax
  _, out, _, _ = prepared
  config = _tokenized_config(out, wordpiece_dir)
  from tests.train.test_resume import _final_params
  from train.loop import train
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  train(config, straight)
  train(time_slice(config, 3), resumed)
  train(config, resumed)
  ref, got = train_losses(straight), train_losses(resumed)
  assert sorted(got) == list(range(1, 7)) and [got[s] for s in got] == [ref[s] for s in got]
  for x, y in zip(jax.tree.leaves(_final_params(straight, config)), jax.tree.leaves(_final_params(resumed, config))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_shards_of_another_vocabulary_are_refused_before_compiling(prepared, tmp_path):
  _, out, index, _ = prepared
  r = subprocess.run([sys.executable, "launch.py", "--config=configs/test_tiny.py", f"--workdir={tmp_path}",
                      f"--config.data.corpus=tokenized:{out}", "--config.data.vocab=byte"],
                     capture_output=True, text=True, cwd=ROOT, env=subprocess_env(), timeout=120)
  assert r.returncode == 2 and "compiled" not in r.stdout
  line = r.stderr.strip().splitlines()[-1]
  assert line.startswith(f"error: data.corpus=tokenized:{out} was tokenized with {index['vocab']['spec']!r}")
  assert f"set --config.data.vocab={index['vocab']['spec']}" in line


# --- transformers pipelines on our exported directories -----------------------------------------------------------

FILL_PROMPTS = ("import [MASK] as np", "def __init__(self, [MASK]):", "return [MASK]")
GEN_PROMPTS = ("import os\n", "def __init__(self")


def _unit_scale(model, seed):
  """Weights at unit scale, so that the top candidates are far apart (HF's 0.02 init gives near-ties that float
  rounding could reorder, and would hide a wrong mapping under the tolerance)."""
  torch.manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 2:
        p.normal_(0, 1.0 if "embeddings" in name else 1.0 / np.sqrt(p.shape[1]))
      elif "norm" in name.lower() and name.endswith("weight"):
        p.uniform_(0.5, 1.5)
      else:
        p.normal_(0, 0.3)
  return model.eval()


def _hf_modernbert(tok_dir, path):
  tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
  cfg = transformers.ModernBertConfig(
      vocab_size=MODEL_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
      global_attn_every_n_layers=2, local_attention=16, pad_token_id=tok.pad_token_id,
      bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, cls_token_id=tok.cls_token_id,
      sep_token_id=tok.sep_token_id)
  _unit_scale(transformers.ModernBertForMaskedLM(cfg), 0).save_pretrained(path)
  tok.save_pretrained(path)
  return [str(path)]


def _hf_electra(tok_dir, path):
  """The released layout: a discriminator and a generator directory sharing one embedding table."""
  tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
  common = dict(vocab_size=MODEL_VOCAB, embedding_size=16, num_hidden_layers=2, max_position_embeddings=64,
                pad_token_id=tok.pad_token_id)
  disc = _unit_scale(transformers.ElectraForPreTraining(transformers.ElectraConfig(
      hidden_size=32, num_attention_heads=2, intermediate_size=64, **common)), 1)
  gen = _unit_scale(transformers.ElectraForMaskedLM(transformers.ElectraConfig(
      hidden_size=8, num_attention_heads=1, intermediate_size=32, **common)), 2)
  gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
  for name, model in (("discriminator", disc), ("generator", gen)):
    model.save_pretrained(path / name)
    tok.save_pretrained(path / name)
  return [str(path / "discriminator"), str(path / "generator")]


def _hf_gpt2(tok_dir, path):
  tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
  cfg = transformers.GPT2Config(vocab_size=MODEL_VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2, n_inner=64,
                                bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
  _unit_scale(transformers.GPT2LMHeadModel(cfg), 3).save_pretrained(path)
  tok.save_pretrained(path)
  return [str(path)]


def _fill_apply(fam, exp):
  """The masked-LM logits our fill-mask reads: ModernBERT's head, ELECTRA's generator."""
  if fam.name != "electra":
    return fam.module.apply
  from models.layers.inputs import default_inputs

  def generator(variables, tokens_BT, segment_ids_BT):
    seg, pos = default_inputs(tokens_BT, segment_ids_BT)
    return fam.module.apply(variables, tokens_BT, seg, pos, method="generator_logits")
  return generator


def _config(family, tok_dir):
  from configs import electra
  from tests.helpers import tiny_causal_config
  if family == "modernbert":
    c = tiny_config()
  elif family == "electra":
    c = electra.get_config("tiny")
  else:
    c = tiny_causal_config()
  c.unlock()
  c.data.vocab, c.model.vocab_size, c.data.seq_len = f"hf:{tok_dir}", MODEL_VOCAB, 32
  c.decode.prompts = GEN_PROMPTS if family == "gpt2" else FILL_PROMPTS
  if family == "gpt2":
    c.decode.temperature, c.decode.max_new_tokens = 0.0, 12
  c.lock()
  return c


def _trained(family, kind, root):
  """A run of the default config's family (tiny) trained with data.vocab=`kind` ("byte", or "spm" as the default
  job's vocabulary, small): (config, workdir). 30 steps make the top candidates distinct enough to compare."""
  from tests.helpers import tiny_causal_config
  c = tiny_causal_config() if family == "gpt2" else tiny_config()
  c.unlock()
  c.data.vocab, c.train.num_steps, c.train.checkpoint_every = kind, 30, 30
  if kind == "spm":   # trained on one standard-library package (seconds), not the whole library (a minute)
    import email
    c.data.corpus, c.data.vocab_size, c.model.vocab_size = os.path.dirname(email.__file__), 600, 600
  c.decode.prompts = GEN_PROMPTS if family == "gpt2" else FILL_PROMPTS
  if family == "gpt2":
    c.decode.temperature, c.decode.max_new_tokens = 0.0, 12
  c.lock()
  from train.loop import train
  train(c, str(root))
  return c, str(root)


@pytest.mark.parametrize("family, kind", [("modernbert", "hf"), ("electra", "hf"), ("gpt2", "hf"),
                                          ("modernbert", "spm"), ("modernbert", "byte"), ("gpt2", "spm"),
                                          ("gpt2", "byte")])
def test_exported_checkpoint_gives_our_predictions_in_a_transformers_pipeline(family, kind, wordpiece_dir, bpe_dir,
                                                                              tmp_path):
  """An imported HF model (kind "hf": a WordPiece or GPT-2 BPE tokenizer) or a run trained with the default job's
  SentencePiece vocabulary or bytes -> our fill-mask / greedy generation -> export (weights, tokenizer files, ids)
  -> `transformers.pipeline` on the exported directory, given the prompts as a user types them: the same
  candidates with the same probabilities (fill-mask) and the same tokens (text generation). The classifier's
  pipeline is tests/families/test_finetune.py's."""
  from decode.fill_mask import mask_candidates
  from decode.generate import generate_token_ids
  from train.hf_convert import export_hf, import_hf
  from train.restore import load_trained
  out = str(tmp_path / "exported")
  if kind == "hf":
    tok_dir = bpe_dir if family == "gpt2" else wordpiece_dir
    src = {"modernbert": _hf_modernbert, "electra": _hf_electra, "gpt2": _hf_gpt2}[family](tok_dir, tmp_path / "hf")
    config = _config(family, tok_dir)
    workdir = str(tmp_path / "imported")
    import_hf(config, src, workdir)
  else:
    config, workdir = _trained(family, kind, tmp_path / "run")
  exp, _, params = load_trained(config, workdir)
  vocab, fam = exp.vocab, exp.family
  assert "wrote tokenizer files" in export_hf(workdir, out)
  if family == "gpt2":
    ours = generate_token_ids(fam.module, params, vocab, list(GEN_PROMPTS), max_new_tokens=12)
    pipe = transformers.pipeline("text-generation", model=out, device="cpu")
    for prompt, row in zip(GEN_PROMPTS, ours):
      # The prompt as a user types it: the exported post-processor adds the BOS our rows start with.
      ref = pipe(prompt, do_sample=False, max_new_tokens=12, return_tensors=True)
      assert len(row) > len(vocab.encode(prompt)) + 1
      assert row == list(ref[0]["generated_token_ids"])
    texts = fam.decode(params, list(GEN_PROMPTS))
    assert texts == [vocab.decode(r[1:]) for r in ours]
    return
  if family == "electra":
    out = os.path.join(out, "generator")     # fill-mask reads the generator, as our decode hook does
  pipe = transformers.pipeline("fill-mask", model=out, device="cpu")
  mask_text = pipe.tokenizer.mask_token
  special = set(vocab.special_ids)
  ours = mask_candidates(_fill_apply(fam, exp), params, vocab, list(FILL_PROMPTS), 32, top_k=5)
  shown = fam.decode(params, list(FILL_PROMPTS))
  for prompt, cands, text in zip(FILL_PROMPTS, ours, shown):
    ref = [r for r in pipe(prompt.replace("[MASK]", mask_text), top_k=30)
           if r["token"] not in special and r["token"] < vocab.size][:5]   # our candidates: real, normal ids
    assert [i for i, _ in cands[0]] == [r["token"] for r in ref]
    np.testing.assert_allclose([p for _, p in cands[0]], [r["score"] for r in ref], rtol=1e-4, atol=1e-7)
    # The decode hook (--mode=decode, closing samples) fills the mask with the top candidate and lists the five.
    filled, listing = text.split("\n  [MASK] 1: ")
    assert listing.startswith(f"{ref[0]['token_str']!r} {ref[0]['score']:.3f} | ")
    ids = vocab.encode_with_masks(prompt)
    assert filled == vocab.decode([ref[0]["token"] if i == vocab.mask_id else i for i in ids])



@pytest.mark.slow   # ~1 min: trains an 8k WordPiece and starts four measuring processes
def test_data_pipeline_benchmark_runs_at_tiny_size(tmp_path):
  """bench/data_pipeline.py end to end on 1-2 MB corpora: prepare's token count equals the plain tokenizers loop's
  (asserted inside), and the memory table has a row per corpus size."""
  r = subprocess.run([sys.executable, "-m", "bench.data_pipeline", f"--workdir={tmp_path}", "--parts=prepare,memory",
                      "--prepare_mb=1", "--memory_mb=1,2", "--batches=20"], capture_output=True, text=True, cwd=ROOT,
                     env=subprocess_env(), timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "| python -m data.prepare --workers=2 (ArrayRecord shards written) |" in r.stdout
  assert "| corpus_1mb.jsonl | 1 |" in r.stdout and "| corpus_2mb.jsonl | 2 |" in r.stdout


@pytest.mark.parametrize("kind", ["byte", "char", "spm", "bpe", "spm_export"])
def test_token_bytes_join_to_the_texts_bytes_as_the_tokenizer_decodes_them(kind, texts, spm_vocab, bpe_dir, tmp_path):
  """Vocabulary.token_bytes(): joining the bytes of encode(text)'s ids gives byte_prefix + the text's UTF-8 bytes,
  and (without that prefix) what the tokenizer's own decode returns, on real text with non-ASCII and whitespace
  runs: bytes, characters, SentencePiece (dummy-prefix space, byte fallback), GPT-2-style byte-level BPE, and the
  SentencePiece model exported as a Hugging Face (Metaspace) tokenizer. Special ids have no bytes."""
  from data.vocab import ByteVocabulary, CharVocabulary
  samples = texts[:200] + ["naïve café — 日本語 🙂\t\r\n  x", " leading and trailing  ", " " * 20 + "x"]
  if kind == "spm_export":
    (tmp_path / "config.json").write_text("{}")
    hf_tokenizer.export_tokenizer(spm_vocab, "spm", [tmp_path], model_max_length=128,
                                  framing=hf_tokenizer.CAUSAL_FRAMING)
    ours = hf_tokenizer.HfTokenizerVocabulary(str(tmp_path))
  else:
    ours = {"byte": ByteVocabulary(), "spm": spm_vocab, "bpe": hf_tokenizer.load(bpe_dir),
            "char": CharVocabulary.from_texts(samples, 400)}[kind]
  table = ours.token_bytes()
  assert len(table) == ours.size and all(table[i] is None for i in ours.special_ids)
  assert ours.byte_prefix == (b" " if kind.startswith("spm") else b"")
  for t in samples:
    ids = ours.encode(t)
    joined = b"".join(table[i] for i in ids)
    assert joined == ours.byte_prefix + t.encode("utf-8"), (kind, t[:40])
    assert joined[len(ours.byte_prefix):].decode("utf-8") == ours.decode(ids)
