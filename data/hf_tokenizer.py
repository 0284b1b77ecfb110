"""Hugging Face tokenizers as vocabularies (`data.vocab=hf:<dir or tokenizer.json>`), and tokenizer files for an
exported checkpoint.

The checkpoint's own special tokens fill our roles by name: pad, cls (BOS), sep (EOS) and mask, read from the
directory's tokenizer_config.json / special_tokens_map.json when present (`pad_token`, `cls_token` or else
`bos_token`, `sep_token` or else `eos_token`, `mask_token`), otherwise from the tokenizer's special added tokens
by their usual names ([PAD] / <pad>, [CLS] / <s> / <|endoftext|>, ...). A tokenizer without a pad token pads with
its sep (EOS) token, as transformers users do for GPT-2 (padded slots are masked by segment ids, so the id never
reaches a loss). A role a family needs and the tokenizer lacks (a masked LM without a mask token) is a one-line
ValueError when the family is built.

Ids are the checkpoint's own: `special_ids` are all special added tokens wherever they sit (GPT-2's
<|endoftext|> is its last id), and `first_normal_id` is the number of leading ids that are all special (0 for
GPT-2, 5 for a BERT-style vocabulary that starts [PAD] [CLS] [SEP] [MASK] [UNK]); masked-LM random replacements
draw from [first_normal_id, size) as transformers' collator draws from the whole vocabulary.
"""
import functools
import hashlib
import json
import os
import pathlib
import shutil
from typing import Sequence

from data.vocab import MASK_TEXT, Vocabulary

_NAMES = {   # role -> usual spellings, first match wins
    "pad": ("[PAD]", "<pad>", "<|pad|>", "<|padding|>", "[pad]"),
    "cls": ("[CLS]", "<s>", "<bos>", "<|begin_of_text|>", "<|endoftext|>", "[BOS]"),
    "sep": ("[SEP]", "</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>", "[EOS]"),
    "mask": ("[MASK]", "<mask>", "<|mask|>", "[mask]"),
}
_CONFIG_KEYS = {"pad": ("pad_token",), "cls": ("cls_token", "bos_token"), "sep": ("sep_token", "eos_token"),
                "mask": ("mask_token",)}


def _tokenizer_file(spec: str) -> pathlib.Path:
  p = pathlib.Path(spec)
  path = p / "tokenizer.json" if p.is_dir() else p
  if not path.is_file():
    raise FileNotFoundError(f"data.vocab=hf:{spec}: no tokenizer.json there; point it at a Hugging Face model "
                            "directory holding tokenizer.json or at the file itself")
  return path


def _content(v) -> str | None:
  return v.get("content") if isinstance(v, dict) else v


def _configured_roles(directory: pathlib.Path) -> dict[str, str]:
  """Role -> token text from tokenizer_config.json, then special_tokens_map.json (first file that names it)."""
  roles: dict[str, str] = {}
  for name in ("tokenizer_config.json", "special_tokens_map.json"):
    f = directory / name
    if not f.is_file():
      continue
    cfg = json.loads(f.read_text())
    for role, keys in _CONFIG_KEYS.items():
      for k in keys:
        if role not in roles and _content(cfg.get(k)):
          roles[role] = _content(cfg[k])
  return roles


class HfTokenizerVocabulary(Vocabulary):
  """A `tokenizers.Tokenizer` (tokenizer.json) with its special tokens mapped onto our roles (module docstring)."""

  def __init__(self, spec: str):
    import tokenizers
    self.spec = spec
    self.path = _tokenizer_file(spec)
    raw = self.path.read_bytes()
    self._fingerprint = "hf:" + hashlib.sha256(raw).hexdigest()[:16]
    self._tok = tokenizers.Tokenizer.from_str(raw.decode("utf-8"))
    added = self._tok.get_added_tokens_decoder()
    self._special = sorted(i for i, t in added.items() if t.special)
    by_text = {t.content: i for i, t in added.items()}
    configured = _configured_roles(self.path.parent)
    self.roles: dict[str, int] = {}
    for role, names in _NAMES.items():
      text = configured.get(role)
      if text is not None:
        i = self._tok.token_to_id(text)
        if i is None:
          raise ValueError(f"{self.path.parent}: the configured {role} token {text!r} is not in {self.path}")
        self.roles[role] = i
      else:
        found = [by_text[n] for n in names if n in by_text]
        if found:
          self.roles[role] = found[0]
    for role in ("cls", "sep"):
      if role not in self.roles:
        raise ValueError(f"data.vocab=hf:{spec}: no {role} token (tokenizer_config.json {_CONFIG_KEYS[role]} or "
                         f"an added token named one of {_NAMES[role]}); every family frames rows with it")
    self.roles.setdefault("pad", self.roles["sep"])
    self.pad_id, self.cls_id, self.sep_id = self.roles["pad"], self.roles["cls"], self.roles["sep"]
    self._mask_text = self._tok.id_to_token(self.roles["mask"]) if "mask" in self.roles else None

  @property
  def mask_id(self) -> int:
    if "mask" not in self.roles:
      raise ValueError(f"data.vocab=hf:{self.spec} has no mask token (tokenizer_config.json mask_token or an added "
                       f"token named one of {_NAMES['mask']}), which this family needs; use a tokenizer with one")
    return self.roles["mask"]

  @property
  def has_mask(self) -> bool:
    return "mask" in self.roles

  @property
  def size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def special_ids(self) -> tuple[int, ...]:
    return tuple(sorted(set(self._special) | set(self.roles.values())))

  @property
  def first_normal_id(self) -> int:
    special, n = set(self.special_ids), 0
    while n in special:
      n += 1
    return n

  @property
  def fingerprint(self) -> str:
    return self._fingerprint

  @property
  def tokenizer(self):
    return self._tok

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def encode_with_masks(self, text: str) -> list[int]:
    """The whole text through the tokenizer with each "[MASK]" spelled as its mask token, so the pieces around a
    mask tokenize exactly as in transformers (e.g. a mask token that strips the space before it)."""
    if MASK_TEXT in text:
      text = text.replace(MASK_TEXT, self._tok.id_to_token(self.mask_id))
    return self.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    """Special ids are dropped except the mask, which renders as "[MASK]"; the tokenizer's decoder joins the
    rest (so the spacing around a mask is the tokenizer's own)."""
    mask, special = self.roles.get("mask"), set(self.special_ids)
    keep = [i for i in map(int, ids) if i == mask or i not in special]
    text = self._tok.decode(keep, skip_special_tokens=False)
    return text.replace(self._mask_text, MASK_TEXT) if self._mask_text and mask in keep else text

  def _decoder_kind(self) -> tuple[str, dict]:
    import json as _json
    spec = _json.loads(self._tok.to_str()).get("decoder") or {}
    kinds = [d.get("type") for d in spec.get("decoders", [spec])]
    return ("ByteLevel" if "ByteLevel" in kinds else "Metaspace" if "Metaspace" in kinds else
            "ByteFallback" if "ByteFallback" in kinds and "Replace" in kinds else ""), spec

  @property
  def byte_prefix(self) -> bytes:
    """Metaspace tokenizers that prepend "\u2581" to every text put a space before it (decoding strips it)."""
    import json as _json
    pre = _json.loads(self._tok.to_str())
    for part in (pre.get("pre_tokenizer") or {}, pre.get("normalizer") or {}):
      for step in part.get("pretokenizers", part.get("normalizers", [part])):
        if step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") != "never":
          return b" "
        if step.get("type") == "Prepend" and step.get("prepend") == "\u2581":
          return b" "
    return b""

  def token_bytes(self) -> tuple[bytes | None, ...]:
    """Byte-level BPE (GPT-2's): each token's characters mapped back through the byte-to-unicode table;
    Metaspace / SentencePiece-style: "\u2581" is a space and <0xAB> pieces are that byte. Other decoders (e.g.
    WordPiece's "##" joining) stand for no fixed bytes per id: one line saying so."""
    kind, _ = self._decoder_kind()
    if not kind:
      raise ValueError(f"data.vocab=hf:{self.spec}: its decoder joins tokens by rules (not byte-level BPE or "
                       "Metaspace), so its ids stand for no fixed bytes; the byte-level view needs one that does")
    special, out = set(self.special_ids), []
    inverse = {c: b for b, c in _bytes_to_unicode().items()}
    for i in range(self.size):
      piece = self._tok.id_to_token(i)
      if i in special or piece is None:
        out.append(None)
      elif kind == "ByteLevel":
        out.append(bytes(inverse[c] for c in piece) if all(c in inverse for c in piece) else None)
      elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        out.append(bytes([int(piece[3:5], 16)]))
      else:
        out.append(piece.replace("\u2581", " ").encode("utf-8"))
    return tuple(out)

  def token_text(self, i: int) -> str:
    """One id as transformers' fill-mask pipeline prints a candidate (`token_str`)."""
    return self._tok.decode([int(i)], skip_special_tokens=False)


@functools.lru_cache(maxsize=8)
def load(spec: str) -> HfTokenizerVocabulary:
  return HfTokenizerVocabulary(spec)


MLM_FRAMING = ("cls", "$A", "sep")   # how a family frames one text: a masked LM's [CLS] text [SEP]; a causal LM's
CAUSAL_FRAMING = ("cls", "$A")       # [CLS] text (BOS, no EOS: generation continues the text)


def save_tokenizer_files(spec: str, out_dir: str | os.PathLike, model_max_length: int | None = None,
                         framing: tuple[str, ...] = MLM_FRAMING) -> list[str]:
  """Writes tokenizer.json, with a post-processor that frames a text as the family does (`framing`), and a
  tokenizer_config.json naming its roles into `out_dir` (transformers' AutoTokenizer loads the pair); the source
  directory's own tokenizer_config.json / special_tokens_map.json are copied when it has them. Returns the files
  written."""
  from data.spm_tokenizer import template
  vocab = load(spec)
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  tok = vocab.tokenizer.__class__.from_str(vocab.tokenizer.to_str())
  tok.post_processor = template(framing, {r: (tok.id_to_token(vocab.roles[r]), vocab.roles[r]) for r in ("cls", "sep")})
  (out / "tokenizer.json").write_text(tok.to_str())
  written = ["tokenizer.json"]
  src = vocab.path.parent
  for name in ("tokenizer_config.json", "special_tokens_map.json"):
    if (src / name).is_file() and src.resolve() != out.resolve():
      shutil.copyfile(src / name, out / name)
      written.append(name)
  if "tokenizer_config.json" not in written:
    _write_tokenizer_config(out, {r: vocab.tokenizer.id_to_token(i) for r, i in vocab.roles.items()},
                            model_max_length)
    written.append("tokenizer_config.json")
  return written


def _write_tokenizer_config(out: pathlib.Path, role_tokens: dict[str, str], model_max_length: int | None) -> None:
  cfg = {"tokenizer_class": "PreTrainedTokenizerFast", **{f"{r}_token": t for r, t in role_tokens.items()}}
  cfg["bos_token"], cfg["eos_token"] = role_tokens["cls"], role_tokens["sep"]
  if model_max_length:
    cfg["model_max_length"] = int(model_max_length)
  (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def export_tokenizer(vocab: Vocabulary, vocab_spec: str, model_dirs: Sequence[str | os.PathLike],
                     model_max_length: int | None = None, framing: tuple[str, ...] = MLM_FRAMING) -> str:
  """The run's vocabulary as tokenizer files in each exported model directory, with a post-processor that frames
  a text as the family does (`framing`: MLM_FRAMING, CAUSAL_FRAMING), and the model's config.json ids (pad,
  bos = cls, eos = sep) set to the vocabulary's roles, so `transformers.pipeline` needs nothing else. `hf:`
  vocabularies copy their files (post-processor replaced); the byte vocabulary writes `byte_tokenizer_json()`;
  SentencePiece writes the converted tokenizer its encoder is (data/spm_tokenizer.py); character and symbol
  vocabularies, and SentencePiece models that cannot be converted, export no tokenizer. Returns one line saying
  what was written."""
  from data import spm_tokenizer
  from data.vocab import ByteVocabulary, SentencePieceVocabulary
  if vocab_spec.startswith("hf:"):
    for d in model_dirs:
      save_tokenizer_files(vocab_spec[3:], d, model_max_length, framing)
  elif isinstance(vocab, ByteVocabulary):
    for d in model_dirs:
      out = pathlib.Path(d)
      (out / "tokenizer.json").write_text(byte_tokenizer_json(framing))
      _write_tokenizer_config(out, {"pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
                              model_max_length)
  elif isinstance(vocab, SentencePieceVocabulary) and not vocab.convert_note:
    text = spm_tokenizer.export_json(vocab.model_path, framing)
    for d in model_dirs:
      out = pathlib.Path(d)
      (out / "tokenizer.json").write_text(text)
      _write_tokenizer_config(out, {"pad": "<pad>", "cls": "<s>", "sep": "</s>", "mask": MASK_TEXT, "unk": "<unk>"},
                              model_max_length)
  else:
    why = (f"its SentencePiece model cannot be converted exactly ({vocab.convert_note})"
           if isinstance(vocab, SentencePieceVocabulary) else "it has no exact tokenizer.json here")
    return (f"no tokenizer exported: data.vocab={vocab_spec!r}: {why}; load the model with a tokenizer of your own "
            "whose ids match")
  for d in model_dirs:
    f = pathlib.Path(d) / "config.json"
    cfg = json.loads(f.read_text())
    cfg.update(pad_token_id=vocab.pad_id, bos_token_id=vocab.cls_id, eos_token_id=vocab.sep_id)
    for key, value in (("cls_token_id", vocab.cls_id), ("sep_token_id", vocab.sep_id)):
      if key in cfg:
        cfg[key] = value
    f.write_text(json.dumps(cfg, indent=2) + "\n")
  return f"wrote tokenizer files for data.vocab={vocab_spec} into {', '.join(map(str, model_dirs))}"


def byte_tokenizer_json(framing: tuple[str, ...] = MLM_FRAMING) -> str:
  """data/vocab.py's ByteVocabulary as a tokenizer.json: byte b is id b + 4 through a byte-level BPE without
  merges, [PAD] [CLS] [SEP] [MASK] are ids 0-3, and the post-processor frames a text as the family does.
  Exact for every text, except that the literal strings "[PAD]", "[CLS]", "[SEP]" and "[MASK]" are read as their
  special tokens (as any transformers tokenizer reads its added tokens)."""
  import tokenizers
  from tokenizers import decoders, models, pre_tokenizers

  from data.spm_tokenizer import template
  alphabet = pre_tokenizers.ByteLevel.alphabet()   # the 256 printable stand-ins of GPT-2's byte-level BPE
  byte_char = _bytes_to_unicode()
  assert sorted(byte_char.values()) == sorted(alphabet)
  specials = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]
  vocab = {**{t: i for i, t in enumerate(specials)}, **{byte_char[b]: b + 4 for b in range(256)}}
  tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
  tok.add_special_tokens(specials)   # already in the vocabulary: they keep ids 0-3
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  tok.decoder = decoders.ByteLevel()
  tok.post_processor = template(framing, {"cls": ("[CLS]", 1), "sep": ("[SEP]", 2)})
  return tok.to_str()


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible byte -> printable character table (printable Latin-1 bytes map to themselves, the rest to
  256 + k in order)."""
  keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
  table, n = {}, 0
  for b in range(256):
    if b in keep:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + n)
      n += 1
  return table
