"""Corpus, vocabularies and grain pipelines: packing density, determinism, resumability, process invariance."""
import numpy as np
import pytest

from configs import modernbert_mlm
from data.corpus import load_corpus, split_paragraphs
from data.pipeline import make_iterator
from data.vocab import CLS, MASK, PAD, SEP, ByteVocabulary, SentencePieceVocabulary, train_sentencepiece


@pytest.fixture(scope="module")
def corpus():
  return load_corpus("stdlib", modernbert_mlm.get_config().data.max_doc_chars)


def test_corpus_split_is_deterministic_and_disjoint(corpus):
  again = load_corpus("stdlib", modernbert_mlm.get_config().data.max_doc_chars)
  assert again.fingerprint == corpus.fingerprint and list(again.validation) == list(corpus.validation)
  assert len(corpus.train) > 10_000 and len(corpus.validation) > 500
  assert 0.02 < len(corpus.validation) / (len(corpus.train) + len(corpus.validation)) < 0.10


def test_paragraph_split_keeps_all_text_and_respects_max_chars():
  text = "a = 1\nb = 2\n\n\n" + "\n".join(f"line {i}" for i in range(100)) + "\n\nend\n"
  docs = split_paragraphs(text, max_chars=64)
  assert all(len(d) <= 64 for d in docs)
  assert "".join(d.replace("\n", "") for d in docs) == text.replace("\n", "")


def test_packing_is_dense_and_segments_are_consistent(corpus):
  c = modernbert_mlm.get_config()
  vocab = ByteVocabulary()
  it = make_iterator(corpus.train, vocab, seq_len=c.data.seq_len, global_batch=c.train.batch_size, seed=0,
                     process_index=0, process_count=1)
  for _ in range(50):
    b = next(it)
    assert (b["segment_ids"] > 0).mean() >= 0.95
    # Within a row a new segment starts exactly where positions restart or a document begins with CLS.
    seg, pos, tok = b["segment_ids"], b["positions"], b["tokens"]
    starts = np.diff(seg, axis=1) != 0
    assert np.all(pos[:, 1:][starts] == 0) and np.all(tok[:, 1:][starts] == CLS)
    assert np.all(pos[:, 1:][~starts] == pos[:, :-1][~starts] + 1)


def test_first_fit_packing_keeps_documents_whole(corpus):
  vocab = ByteVocabulary()
  it = make_iterator(corpus.train, vocab, seq_len=512, global_batch=4, seed=0, packing="first_fit",
                     process_index=0, process_count=1)
  b = next(it)
  whole = 0
  for row_tok, row_seg in zip(b["tokens"], b["segment_ids"]):
    for s in set(row_seg[row_seg > 0].tolist()):
      doc = row_tok[row_seg == s]
      # A whole document [CLS] ... [SEP], or a row-sized piece of a longer one, or the last piece of one.
      assert (doc[0] == CLS and doc[-1] == SEP) or len(doc) == 512 or (doc[0] != CLS and doc[-1] == SEP)
      whole += doc[0] == CLS and doc[-1] == SEP
  assert whole >= 4


def test_pipeline_is_deterministic_and_resumable(corpus):
  vocab = ByteVocabulary()
  mk = lambda: make_iterator(corpus.train, vocab, seq_len=32, global_batch=4, seed=3, process_index=0,  # noqa
                             process_count=1)
  a, b = mk(), mk()
  for _ in range(3):
    x, y = next(a), next(b)
    assert all(np.array_equal(x[k], y[k]) for k in x)
  state = a.get_state()
  expected = [next(a) for _ in range(3)]
  c = mk()
  c.set_state(state)
  for e in expected:
    got = next(c)
    assert all(np.array_equal(e[k], got[k]) for k in e)
  other_seed = make_iterator(corpus.train, vocab, seq_len=32, global_batch=4, seed=4, process_index=0,
                             process_count=1)
  assert not np.array_equal(next(other_seed)["tokens"], next(mk())["tokens"])


def test_global_batch_and_data_position_do_not_depend_on_process_count(corpus):
  """2 shards on 1, 2 and 4 processes (4: each shard is read by two processes, each keeping its rows): the same
  global batches; positions stored by one process count restore on another (the checkpoint's records)."""
  vocab = ByteVocabulary()
  kw = dict(seq_len=32, global_batch=8, seed=0, num_shards=2)
  procs = lambda n: [make_iterator(corpus.train, vocab, process_index=i, process_count=n, **kw)  # noqa: E731
                     for i in range(n)]
  one, (two,) = procs(1), [procs(2)]
  four = procs(4)
  glob = lambda its: np.concatenate([next(it)["tokens"] for it in its])  # noqa: E731
  for _ in range(3):
    g = glob(one)
    np.testing.assert_array_equal(g, glob(two))
    np.testing.assert_array_equal(g, glob(four))
  records = {}
  for it in four:                      # what a 4-process checkpoint holds: each shard once
    for key, value in it.portable_state().items():
      assert key not in records
      records[key] = value
  assert sorted(records) == ["shard_0-of-2", "shard_1-of-2"]
  expected = [glob(four) for _ in range(2)]
  for n in (1, 2):                     # restored on other process counts: the batches continue
    its = procs(n)
    for it in its:
      it.set_portable_state(records.__getitem__)
    for e in expected:
      np.testing.assert_array_equal(e, glob(its))
  with pytest.raises(ValueError, match="must be divisible by the process count 3"):
    make_iterator(corpus.train, vocab, process_index=0, process_count=3, **kw)


def test_byte_vocabulary_round_trip_and_masks():
  v = ByteVocabulary()
  text = "def f(x):\n    return 'é' + x\n"
  assert v.decode(v.encode(text)) == text
  ids = v.encode_with_masks("a[MASK]b")
  assert ids == [ord("a") + 4, MASK, ord("b") + 4]
  assert v.decode(ids) == "a[MASK]b"
  assert v.decode([CLS, *v.encode("x"), SEP, PAD]) == "x"


def test_sentencepiece_trained_on_corpus_has_the_shared_special_ids(corpus, tmp_path):
  path = train_sentencepiece(corpus.train[:3000], vocab_size=400, model_prefix=str(tmp_path / "spm"))
  v = SentencePieceVocabulary(path)
  assert v.size == 400
  assert v._sp.pad_id() == PAD and v._sp.bos_id() == CLS and v._sp.eos_id() == SEP
  assert v._sp.piece_to_id("[MASK]") == MASK
  text = "    def __init__(self, name):\n        self._name = name  # ünïcödé\n"
  ids = v.encode(text)
  assert min(ids) >= v.first_normal_id       # text never encodes to a special id
  assert v.decode(ids) == text               # whitespace and newlines survive (code is whitespace-sensitive)
  assert len(ids) < len(text.encode()) * 0.8  # it compresses
  assert v.decode(v.encode_with_masks("x = [MASK]")) == "x = [MASK]"
  # Encoding goes through `tokenizers` over the same pieces (data/spm_tokenizer.py): SentencePiece's own encoder
  # gives the same ids, or a segmentation of exactly the same score (the two libraries break ties differently).
  ties = 0
  for t in corpus.train[:400]:
    ours, theirs = v.encode(t), v._sp.encode(t)
    if ours != theirs:
      ties += 1
      assert sum(map(v._sp.get_score, ours)) == pytest.approx(sum(map(v._sp.get_score, theirs)), abs=1e-4)
  assert ties < 8


def test_first_fit_keeps_every_token_of_a_document_longer_than_64_rows():
  """A 3,000-byte document in rows of 16 needs 188 rows; first-fit packing used to keep only the first 64."""
  from data.pipeline import packed_dataset
  from data.vocab import ByteVocabulary
  vocab = ByteVocabulary()
  doc = "".join(chr(97 + i % 26) for i in range(3000))
  rows = list(packed_dataset([doc], vocab, seq_len=16, batch_size=1, seed=0, repeat=False, packing="first_fit"))
  tokens = np.concatenate([r["tokens"][r["segment_ids"] > 0] for r in rows])
  assert sorted(tokens.tolist()) == sorted([vocab.cls_id] + vocab.encode(doc) + [vocab.sep_id])


def test_the_no_context_baseline_answers_the_training_mode_and_scores_it_on_validation(monkeypatch):
  """Documents.unigram_baseline (printed beside the eval accuracy and loss): the training split's most frequent
  token ('a') scored on a validation split whose own most frequent token differs ('b'), add-one smoothed unigram
  loss, special ids never counted. Hand-computed."""
  import math

  from data import sources
  from data.corpus import Corpus
  from data.vocab import ByteVocabulary
  corpus = Corpus(train=["aaab", "ab"], validation=["bbba"], fingerprint="x")
  monkeypatch.setattr(sources, "corpus_from_config", lambda cfg: corpus)
  docs = sources.Documents.__new__(sources.Documents)   # skip __post_init__'s corpus check
  object.__setattr__(docs, "data_cfg", None)
  object.__setattr__(docs, "vocab", ByteVocabulary())
  got = docs.unigram_baseline()
  size = ByteVocabulary().size - 4                  # normal ids: the 256 bytes (4 special ids never counted)
  total = 6 + size                                  # train: 4 a + 2 b, plus one per normal id
  p_a, p_b = 5 / total, 3 / total
  assert got["accuracy"] == pytest.approx(1 / 4)    # 'a' is 1 of validation's 4 tokens
  assert got["loss"] == pytest.approx(-(3 * math.log(p_b) + math.log(p_a)) / 4)
