"""A SentencePiece unigram model as a Hugging Face `tokenizers.Tokenizer`: the encoder our SentencePiece
vocabulary uses, and the tokenizer.json an exported checkpoint carries, so both read text identically.

SentencePiece trains the pieces (data/vocab.py `train_sentencepiece`); encoding goes through `tokenizers`' Unigram
model over the same pieces and scores. The two agree on every text except where several segmentations have the
same score (e.g. a run of 20 spaces as 16 + 4 or 4 + 16; 11 of 3,004 standard-library documents): each library
breaks such ties its own way, and no setting of `tokenizers` reproduces SentencePiece's. Encoding with `tokenizers`
makes the exported tokenizer exact by construction (issue: HF exports that `transformers.pipeline` loads).

Converted: unigram models with the identity normaliser and no whitespace collapsing (what `train_sentencepiece`
writes; add_dummy_prefix either way), byte fallback on or off. Other models (BPE, NFKC normalisers, ...) keep
SentencePiece's own encoder and export no tokenizer; `convertible` says why.

Control and byte pieces (<pad>, <s>, </s>, [MASK], <unk>, <0x0A>, ...) get a score no segmentation would choose,
so text never encodes to them as SentencePiece never does; byte fallback still emits byte pieces for characters
outside the pieces. The exported tokenizer adds the control pieces as special tokens (so "[MASK]" in a
fill-mask prompt is the mask; as with every transformers tokenizer, the literal text "<s>" is then read as <s>)
and frames rows as the family does (`framing`).
"""
import pathlib

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6   # sentencepiece_model.proto piece types
_NEVER = -1e9


def _proto(model_path: str):
  from sentencepiece import sentencepiece_model_pb2
  m = sentencepiece_model_pb2.ModelProto()
  m.ParseFromString(pathlib.Path(model_path).read_bytes())
  return m


def convertible(model_path: str) -> str:
  """'' if `unigram_tokenizer` reproduces this model's segmentation, else why not (one phrase)."""
  m = _proto(model_path)
  if m.trainer_spec.model_type != 1:
    return "it is not a unigram model"
  n = m.normalizer_spec
  if n.name != "identity" or n.precompiled_charsmap or n.remove_extra_whitespaces:
    return f"its normaliser ({n.name}, remove_extra_whitespaces={n.remove_extra_whitespaces}) has no exact equivalent"
  if m.trainer_spec.treat_whitespace_as_suffix or any(p.type == USER_DEFINED for p in m.pieces):
    return "it uses whitespace suffixes or user-defined pieces"
  return ""


def unigram_tokenizer(model_path: str):
  """The model's pieces and scores as a `tokenizers` Unigram tokenizer with SentencePiece's normalisation and
  decoding, no special tokens added (text is encoded as SentencePiece encodes it; see the module docstring)."""
  from tokenizers import Tokenizer, decoders, models, normalizers
  m = _proto(model_path)
  vocab = [(p.piece, p.score if p.type == NORMAL else _NEVER) for p in m.pieces]
  unk = [i for i, p in enumerate(m.pieces) if p.type == UNKNOWN]
  tok = Tokenizer(models.Unigram(vocab, unk_id=unk[0] if unk else None, byte_fallback=m.trainer_spec.byte_fallback))
  steps = [normalizers.Prepend("▁")] if m.normalizer_spec.add_dummy_prefix else []
  tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
  strip = [decoders.Strip(" ", 1, 0)] if m.normalizer_spec.add_dummy_prefix else []
  tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), *strip])
  return tok


def export_json(model_path: str, framing: tuple[str, ...]) -> str:
  """tokenizer.json for an exported checkpoint: `unigram_tokenizer` with the control pieces as special tokens and
  a post-processor that frames a text as `framing` does ("cls", "$A", "sep" in order; e.g. ("cls", "$A") for a
  causal LM, ("cls", "$A", "sep") for a masked LM)."""
  from tokenizers import AddedToken
  m = _proto(model_path)
  tok = unigram_tokenizer(model_path)
  tok.add_special_tokens([AddedToken(p.piece, special=True, normalized=False)
                          for p in m.pieces if p.type in (CONTROL, UNKNOWN)])
  roles = {"cls": m.trainer_spec.bos_id, "sep": m.trainer_spec.eos_id}
  tok.post_processor = template(framing, {r: (m.pieces[i].piece, i) for r, i in roles.items()})
  return tok.to_str()


def template(framing: tuple[str, ...], roles: dict[str, tuple[str, int]]):
  """A TemplateProcessing post-processor: `framing` over "cls" / "$A" / "sep", `roles` role -> (text, id)."""
  from tokenizers import processors
  single = " ".join(roles[r][0] if r in roles else r for r in framing)
  pair = single + " " + " ".join("$B" if r == "$A" else roles[r][0] for r in framing if r != "cls")
  used = sorted({roles[r] for r in framing if r in roles}, key=lambda t: t[1])
  return processors.TemplateProcessing(single=single, pair=pair, special_tokens=used)


def adds_dummy_prefix(model_path: str) -> bool:
  """Whether the model puts a space ("\u2581") before every text it encodes."""
  return bool(_proto(model_path).normalizer_spec.add_dummy_prefix)
