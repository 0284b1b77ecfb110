"""Exact byte-level probabilities from a tokenized language model (Phan et al., ICLR 2025: the Byte-Token
Representation lemma), with byte-level sampling and scoring, prompts that end mid-token, ensembles of models with
different vocabularies, and the two baselines users know: naive prompting and token healing.

The lemma: P(the byte stream starts with x) = sum over the covers t of x of P(the token stream starts with t), a
cover being a token sequence whose bytes without its last token are a strict prefix of x and whose bytes start
with x (the last token may overhang). The next-byte law is P(x b) / P(x) for the 256 bytes, and the end of the
text is the mass of the token sequences that spell x exactly, followed by EOS.

The covers are kept incrementally, one byte at a time, as hypotheses (host side; the model work is batched):
  aligned   a token sequence t spelling x exactly, with M(t) = P(token stream starts with t) and its next-token
            law p(.|t) (one batched model step per byte for all aligned hypotheses, each on its own fork of the
            KV cache): it puts M(t) p(v|t) on the byte that starts token v, and M(t) p(EOS|t) on the end
  overhang  a token sequence spelling x r, r non-empty: it puts its M on r's first byte
Advancing by byte b keeps the overhangs whose r starts with b and opens, from each aligned t, one hypothesis per
token starting with b. Every tokenization is a hypothesis (the lemma, exact for any model): non-canonical ones are
not zeroed by a rule (a prefix of a canonical BPE or unigram encoding need not be canonical itself, so a rule
loses mass) but carry the model's own, tiny for a model trained on canonical encodings; `prune` drops hypotheses
below that fraction of the largest (0: none, exact) and `max_hypotheses` caps the aligned ones and the parent
states kept alive (the cache rows: at most twice max_hypotheses); overhangs share their parent's row, so the cap
never cuts off a likely byte by counting tokens.

Special ids other than EOS (and the embedding's padding rows) stand for no bytes: their mass is renormalised away.
Legend: V model vocabulary (logits), H hypotheses, 257 = the 256 bytes and the end of the text (index END).
"""
import dataclasses
import functools
import math
from typing import Any, Callable, Hashable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from models.layers.kv_cache import KVCache

END = 256


class TokenModel(Protocol):
  """A causal LM's states: `root()` the state after BOS and its next-token log-probabilities [V]; `step(parents,
  tokens)` feeds one token to each parent state: new states and their log-probabilities [n, V]; `keep(states)`
  says which states may still be stepped (the others can be freed)."""

  def root(self) -> tuple[Hashable, np.ndarray]: ...

  def step(self, parents: Sequence[Hashable], tokens: Sequence[int]) -> tuple[list[Hashable], np.ndarray]: ...

  def keep(self, states: Sequence[Hashable]) -> None: ...

  def prefill(self, tokens: Sequence[int]) -> tuple[Hashable, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class PrefixModel:
  """A TokenModel from a function of whole token prefixes: `logprobs(prefixes) -> [n, V]` (the prefixes exclude
  BOS). States are the prefixes themselves (no cache); for exact laws given as tables and for tests."""
  logprobs: Callable[[list[tuple[int, ...]]], np.ndarray]

  def root(self):
    return (), np.asarray(self.logprobs([()]))[0]

  def step(self, parents, tokens):
    states = [tuple(p) + (int(t),) for p, t in zip(parents, tokens)]
    return states, np.asarray(self.logprobs(states))

  def keep(self, states):
    del states

  def prefill(self, tokens):
    state = tuple(int(t) for t in tokens)
    return state, np.asarray(self.logprobs([state]))[0]


@dataclasses.dataclass
class Hypothesis:
  tokens: tuple[int, ...]
  logmass: float            # log M(tokens)
  rest: bytes               # bytes of the last token past x (b"": aligned)
  parent: Hashable          # model state before the last token (the root's for the empty sequence)
  state: Hashable = None    # model state after all tokens (aligned, once stepped)
  logprobs: np.ndarray | None = None   # [V] next-token law at `state`


@dataclasses.dataclass
class ByteState:
  """The covers of a byte prefix: `prefix` (bytes after the vocabulary's byte_prefix) and its hypotheses."""
  prefix: bytes
  hypotheses: list[Hypothesis]


class ByteLevel:
  """The byte-level view of one token model (module docstring). `token_bytes` is the vocabulary's table
  (Vocabulary.token_bytes), `byte_prefix` what its tokenizer puts before every text (SentencePiece's space)."""

  def __init__(self, model: TokenModel, token_bytes: Sequence[bytes | None], eos_id: int, *,
               byte_prefix: bytes = b"", prune: float = 0.0, max_hypotheses: int = 4096):
    self.model, self.eos_id, self.byte_prefix = model, int(eos_id), bytes(byte_prefix)
    self.prune, self.max_hypotheses = float(prune), int(max_hypotheses)
    self.token_bytes = tuple(token_bytes)
    first = np.full(len(self.token_bytes), -1, np.int64)
    for i, b in enumerate(self.token_bytes):
      if b:
        first[i] = b[0]
    first[self.eos_id] = END
    self._first = first                                         # [V'] first byte of each id (-1: no bytes)
    self._by_first = [np.flatnonzero(first == b) for b in range(256)]

  @classmethod
  def of(cls, model: TokenModel, vocab: Any, **kw) -> "ByteLevel":
    """From a Vocabulary (its token_bytes, byte_prefix and EOS: the SEP role)."""
    return cls(model, vocab.token_bytes(), vocab.sep_id, byte_prefix=vocab.byte_prefix, **kw)

  # -- states ------------------------------------------------------------------------------------------------
  def start(self) -> ByteState:
    """The empty text: one aligned hypothesis (no tokens) at the model's root, advanced through byte_prefix."""
    root, logprobs = self.model.root()
    state = ByteState(b"", [Hypothesis((), 0.0, b"", None, root, self._law(logprobs))])
    for b in self.byte_prefix:
      state = self._advance(state, b)
    return dataclasses.replace(state, prefix=b"")

  def state(self, prefix: bytes | str, context: Sequence[int] | None = None) -> ByteState:
    """The covers of `prefix` (text or bytes), built byte by byte from the start; with `context` (token ids whose
    bytes, after byte_prefix, begin `prefix`) only the covers that start with those tokens, built from one
    prefill. That is every cover with mass when the context is the canonical encoding of a head of the text that
    ends where no token of the tokenizer crosses (before a space, for tokenizers that split at whitespace) and
    the model gives non-canonical encodings no mass: the official code's shortcut (`context_split`)."""
    prefix = _as_bytes(prefix)
    if context is None:
      state = self.start()
      done = 0
    else:
      head = b"".join(self.token_bytes[int(t)] for t in context)
      if not head.startswith(self.byte_prefix) or not prefix.startswith(head[len(self.byte_prefix):]):
        raise ValueError("the context tokens do not spell the start of the prefix")
      handle, logprobs = self.model.prefill(list(context))
      done = len(head) - len(self.byte_prefix)
      state = ByteState(prefix[:done], [Hypothesis(tuple(int(t) for t in context), 0.0, b"", None, handle,
                                                   self._law(logprobs))])
    for b in prefix[done:]:
      state = self.advance(state, b)
    return state

  def advance(self, state: ByteState, byte: int) -> ByteState:
    if not 0 <= int(byte) < 256:
      raise ValueError(f"byte {byte} is not in [0, 256)")
    new = self._advance(state, int(byte))
    if not new.hypotheses:
      raise ValueError(f"the model gives the text {state.prefix + bytes([byte])!r} probability 0")
    return new

  # -- laws --------------------------------------------------------------------------------------------------
  def next_byte_logprobs(self, state: ByteState) -> np.ndarray:
    """log P(next byte = b | prefix) for b < 256, and log P(the text ends here | prefix) at END: [257]."""
    self._step_pending(state)
    mass = np.zeros(257)
    top = max(h.logmass for h in state.hypotheses)
    for h in state.hypotheses:
      w = math.exp(h.logmass - top)
      if h.rest:
        mass[h.rest[0]] += w
      else:
        mass += w * self._byte_law(h.logprobs)
    with np.errstate(divide="ignore"):
      return np.log(mass) - np.log(mass.sum())

  def prefix_logprob(self, text: bytes | str) -> float:
    """log P(the byte stream starts with `text`) (after byte_prefix): the sum of the next-byte log-laws along it
    (the covers' mass relative to the mass the model gives texts; -inf once a byte has probability 0)."""
    return self._walk(_as_bytes(text))[0]

  def score(self, text: bytes | str) -> float:
    """log P(the text is exactly `text`): the prefix log-probability plus the end's."""
    total, state = self._walk(_as_bytes(text))
    return total if state is None else total + float(self.next_byte_logprobs(state)[END])

  def _walk(self, text: bytes) -> tuple[float, ByteState | None]:
    total, state = 0.0, self.start()
    for b in text:
      lp = float(self.next_byte_logprobs(state)[b])
      if lp == -np.inf:
        return -np.inf, None
      total, state = total + lp, self.advance(state, b)
    return total, state

  # -- internals ---------------------------------------------------------------------------------------------
  def _law(self, logprobs: np.ndarray) -> np.ndarray:
    return np.asarray(logprobs, np.float64)[: len(self.token_bytes)]

  def _byte_law(self, logprobs_V: np.ndarray) -> np.ndarray:
    """[257] mass of the next token's first byte (END for EOS), unnormalised (non-byte ids dropped)."""
    p = np.exp(logprobs_V)
    keep = self._first >= 0
    return np.bincount(self._first[keep], weights=p[keep], minlength=257)

  def _step_pending(self, state: ByteState) -> None:
    """One batched model step for the aligned hypotheses that have no next-token law yet."""
    pending = [h for h in state.hypotheses if not h.rest and h.logprobs is None]
    if not pending:
      return
    states, logprobs = self.model.step([h.parent for h in pending], [h.tokens[-1] for h in pending])
    for h, s, lp in zip(pending, states, logprobs):
      h.state, h.logprobs = s, self._law(lp)

  def _advance(self, state: ByteState, b: int) -> ByteState:
    self._step_pending(state)
    out = []
    for h in state.hypotheses:
      if h.rest:
        if h.rest[0] == b:
          out.append(dataclasses.replace(h, rest=h.rest[1:], state=None, logprobs=None))
        continue
      for v in self._by_first[b]:
        lp = float(h.logprobs[v])
        if lp > -np.inf:
          out.append(Hypothesis(h.tokens + (int(v),), h.logmass + lp, self.token_bytes[v][1:], h.state))
    out = self._pruned(out)
    self.model.keep([h.parent for h in out])
    return ByteState(state.prefix + bytes([b]), out)

  def _pruned(self, hyps: list[Hypothesis]) -> list[Hypothesis]:
    if not hyps:
      return hyps
    top = max(h.logmass for h in hyps)
    if self.prune > 0:
      hyps = [h for h in hyps if h.logmass >= top + math.log(self.prune)]
    aligned = [h for h in hyps if not h.rest]
    if len(aligned) > self.max_hypotheses:   # only aligned ones take model rows; overhangs share their parent's
      keep = {id(h) for h in sorted(aligned, key=lambda h: -h.logmass)[: self.max_hypotheses]}
      hyps = [h for h in hyps if h.rest or id(h) in keep]
    best: dict[Hashable, float] = {}   # the rows kept alive: at most max_hypotheses parents, the likeliest
    for h in hyps:
      best[h.parent] = max(best.get(h.parent, -np.inf), h.logmass)
    if len(best) > self.max_hypotheses:
      alive = set(sorted(best, key=lambda k: -best[k])[: self.max_hypotheses])
      hyps = [h for h in hyps if h.parent in alive]
    return hyps


class CachedCausalLm:
  """A TokenModel over a causal LM (models/causal_lm, learned embeddings) whose states are rows of one KV-cache pool:
  a step gathers the parents' rows, feeds one token to each in one jitted call of fixed width `rows`, and writes
  the results to free rows (a state forks its parent's cache; nothing is recomputed). `keep` frees the rest.
  Row `rows` holds the empty prefix and row `rows + 1` takes the padding's writes."""

  def __init__(self, module: Any, params: Any, bos_id: int, *, rows: int = 64, max_len: int = 256):
    from models.family import ModuleFn
    self.params, self.bos_id, self.rows, self.max_len = params, int(bos_id), int(rows), int(max_len)
    self._apply = ModuleFn(module)
    self._pool = module.init_cache(rows + 2, max_len)
    self._length = {}                  # row -> tokens in it
    self._free = list(range(rows))

  def root(self):
    [state], lp = self.step([self.rows], [self.bos_id])
    return state, lp[0]

  def step(self, parents, tokens):
    parents, tokens = [int(p) for p in parents], [int(t) for t in tokens]
    states, out = [], []
    for i in range(0, len(parents), self.rows):
      s, lp = self._step_chunk(parents[i:i + self.rows], tokens[i:i + self.rows])
      states += s
      out.append(lp)
    return states, np.concatenate(out)

  def _step_chunk(self, parents, tokens):
    n = len(parents)
    if len(self._free) < n:
      raise ValueError(f"the byte-level view holds more than rows={self.rows} model states: raise rows, or prune")
    for p in parents:
      if self._length.get(p, 0) + 1 > self.max_len:
        raise ValueError(f"a hypothesis reached max_len={self.max_len} tokens; raise max_len")
    dest = [self._free.pop() for _ in range(n)]
    pad = self.rows - n
    self._pool, logprobs = _pool_step(self._apply, self.params, self._pool,
                                      np.array(parents + [self.rows + 1] * pad, np.int32),
                                      np.array(tokens + [0] * pad, np.int32),
                                      np.array(dest + [self.rows + 1] * pad, np.int32))
    for p, d in zip(parents, dest):
      self._length[d] = self._length.get(p, 0) + 1
    return dest, np.asarray(logprobs[:n], np.float64)

  def prefill(self, tokens):
    """BOS and `tokens` into a free row in one call (padded to a multiple of 64 positions, then rewound)."""
    ids = [self.bos_id, *map(int, tokens)]
    if len(ids) > self.max_len:
      raise ValueError(f"{len(ids)} tokens exceed max_len={self.max_len}; raise max_len")
    if not self._free:
      raise ValueError(f"the byte-level view holds more than rows={self.rows} model states: raise rows, or prune")
    dest = self._free.pop()
    padded = np.zeros((1, min(_bucket(len(ids)), self.max_len)), np.int32)
    padded[0, :len(ids)] = ids
    self._pool, logprobs = _pool_prefill(self._apply, self.params, self._pool, padded, np.int32(len(ids)),
                                         np.int32(self.rows), np.int32(dest))
    self._length[dest] = len(ids)
    return dest, np.asarray(logprobs, np.float64)

  def keep(self, states):
    live = {int(s) for s in states if s is not None and int(s) < self.rows}
    self._free = [r for r in range(self.rows) if r not in live]
    self._length = {r: n for r, n in self._length.items() if r in live}


def _as_bytes(text: bytes | str) -> bytes:
  return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def sample_bytes(views: Sequence[ByteLevel], prefix: bytes | str, max_bytes: int, rng: np.random.Generator, *,
                 combine: str = "mean", temperature: float = 1.0) -> bytes:
  """Continues `prefix` byte by byte from the combined next-byte law of one or more views (module ensemble rules:
  `ensemble_logprobs`) until the end of the text or `max_bytes`; returns the continuation's bytes."""
  states = [v.state(prefix) for v in views]
  out = bytearray()
  for _ in range(max_bytes):
    lp = ensemble_logprobs([v.next_byte_logprobs(s) for v, s in zip(views, states)], combine)
    if temperature != 1.0:
      lp = lp / temperature
    p = np.exp(lp - lp.max())
    b = int(rng.choice(257, p=p / p.sum()))
    if b == END:
      break
    out.append(b)
    states = [v.advance(s, b) for v, s in zip(views, states)]
  return bytes(out)


def ensemble_logprobs(laws: Sequence[np.ndarray], combine: str = "mean") -> np.ndarray:
  """Next-byte log-laws [257] of several models (any vocabularies) combined: "mean", the arithmetic mean of the
  laws (the official code's ensemble), or "product", the normalised product of experts."""
  laws = np.stack([np.asarray(x, np.float64) for x in laws])
  if combine == "mean":
    top = laws.max()
    with np.errstate(divide="ignore"):
      out = np.log(np.exp(laws - top).mean(0)) + top
  elif combine == "product":
    out = laws.sum(0)
  else:
    raise ValueError(f"combine={combine!r}: use 'mean' or 'product'")
  finite = out[np.isfinite(out)]
  return out - (finite.max() + np.log(np.exp(finite - finite.max()).sum()))


# -- the baselines --------------------------------------------------------------------------------------------
def naive_next_byte_logprobs(model: TokenModel, vocab: Any, prefix: str) -> np.ndarray:
  """Naive prompting: the prompt tokenized as the vocabulary does, the next byte read off the next token's first
  byte ([257], END for EOS). Biased wherever the tokenizer would have merged the prompt's end with what follows."""
  view = ByteLevel.of(model, vocab)
  state, logprobs = _feed(model, vocab.encode(prefix))
  del state
  law = view._byte_law(view._law(logprobs))
  return _normalised_log(law)


def healed_next_byte_logprobs(model: TokenModel, vocab: Any, prefix: str) -> np.ndarray:
  """Token healing: back off the prompt's last token r and constrain the next token to those whose bytes start
  with r's; the next byte is the first past r (a token equal to r looks one token further). Less biased than
  naive prompting, still not exact."""
  view = ByteLevel.of(model, vocab)
  ids = vocab.encode(prefix)
  if not ids:
    return naive_next_byte_logprobs(model, vocab, prefix)
  back, r = ids[:-1], view.token_bytes[ids[-1]]
  state, logprobs = _feed(model, back)
  lp = view._law(logprobs)
  law = np.zeros(257)
  for v, b in enumerate(view.token_bytes):
    if not b or not b.startswith(r) or lp[v] == -np.inf:
      continue
    if len(b) > len(r):
      law[b[len(r)]] += math.exp(lp[v])
    else:
      [_], nxt = model.step([state], [v])
      law += math.exp(lp[v]) * view._byte_law(view._law(nxt[0]))
  return _normalised_log(law)


def healed_prompt(vocab: Any, prefix: str) -> tuple[list[int], bytes]:
  """Token healing's prompt: the ids without the last token, and the bytes the next token must start with."""
  ids = vocab.encode(prefix)
  if not ids:
    return [], b""
  return ids[:-1], vocab.token_bytes()[ids[-1]]


def _normalised_log(law: np.ndarray) -> np.ndarray:
  """log(law / sum); all -inf when the law has no mass (a prompt the model never continues: no answer)."""
  total = law.sum()
  if total <= 0:
    return np.full(law.shape, -np.inf)
  with np.errstate(divide="ignore"):
    return np.log(law) - np.log(total)


def _feed(model: TokenModel, ids: Sequence[int]):
  state, logprobs = model.root()
  for t in ids:
    model.keep([state])
    [state], lp = model.step([state], [t])
    logprobs = lp[0]
  return state, logprobs


@functools.partial(jax.jit, static_argnames=("apply_fn",), donate_argnums=(2,))
def _pool_step(apply_fn, params, pool, parents_N, tokens_N, dest_N):
  """Feeds tokens_N[i] to a copy of pool row parents_N[i] and writes the result to row dest_N[i]; the rows'
  next-token log-probabilities [N, V] (float32 softmax over the model's logits)."""
  rows = KVCache(pool.k[:, parents_N], pool.v[:, parents_N], pool.lengths[parents_N])
  logits, rows = apply_fn({"params": params}, tokens_N[:, None], cache=rows)
  pool = KVCache(pool.k.at[:, dest_N].set(rows.k), pool.v.at[:, dest_N].set(rows.v),
                 pool.lengths.at[dest_N].set(rows.lengths))
  return pool, jax.nn.log_softmax(logits[:, 0].astype(jnp.float32), axis=-1)


@functools.partial(jax.jit, static_argnames=("apply_fn",), donate_argnums=(2,))
def _pool_prefill(apply_fn, params, pool, tokens_1T, length, empty, dest):
  """Feeds tokens_1T (real length `length`, then padding) to a copy of the empty row and writes it to row `dest`,
  rewound to `length`; the next-token log-probabilities after the last real token [V]."""
  row = KVCache(pool.k[:, empty][:, None], pool.v[:, empty][:, None], pool.lengths[empty][None])
  logits, row = apply_fn({"params": params}, tokens_1T, cache=row)
  pool = KVCache(pool.k.at[:, dest].set(row.k[:, 0]), pool.v.at[:, dest].set(row.v[:, 0]),
                 pool.lengths.at[dest].set(length))
  return pool, jax.nn.log_softmax(logits[0, length - 1].astype(jnp.float32), axis=-1)


def cover_logmass(state: ByteState) -> float:
  """log of the lemma's sum: the total mass M of the covers of `state.prefix` (its hypotheses), unnormalised."""
  m = np.array([h.logmass for h in state.hypotheses])
  return float(m.max() + np.log(np.exp(m - m.max()).sum())) if m.size else -np.inf


# -- what --mode=decode runs (decode.heal, decode.byte_level) --------------------------------------------------
def _bucket(n: int, step: int = 64) -> int:
  """Cache lengths rounded up, so prompts of similar length share one compiled step."""
  return -(-n // step) * step


def _choose(logprobs: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
  if temperature == 0:
    return int(np.argmax(logprobs))
  z = logprobs / temperature
  p = np.exp(z - z[np.isfinite(z)].max())
  return int(rng.choice(len(p), p=p / p.sum()))


def healed_continuations(module: Any, params: Any, vocab: Any, prompts: Sequence[str], *, max_new_tokens: int,
                         temperature: float = 0.0, seed: int = 0) -> list[str]:
  """Token healing: each prompt without its last token r, the next token drawn among those whose bytes start
  with r's (greedy at temperature 0), then ordinary generation; prompt + continuation as text."""
  from decode.generate import continue_ids
  from decode.sampling import SamplerConfig
  table, rng, rows = vocab.token_bytes(), np.random.default_rng(seed), []
  for prompt in prompts:
    back, r = healed_prompt(vocab, prompt)
    lm = CachedCausalLm(module, params, vocab.cls_id, rows=2, max_len=_bucket(len(back) + 2))
    _, lp = _feed(lm, back)
    allowed = np.array([b is not None and b.startswith(r) for b in table] +
                       [False] * (len(lp) - len(table)))
    rows.append([vocab.cls_id, *back, _choose(np.where(allowed, lp, -np.inf), temperature, rng)])
  sampler = None if temperature == 0 else SamplerConfig(temperature=temperature)
  ids = continue_ids(module, params, vocab, rows, max_new_tokens=max(max_new_tokens - 1, 1), sampler=sampler,
                     seed=seed)
  return [vocab.decode(r[1:]) for r in ids]


def byte_level_continuations(module: Any, params: Any, vocab: Any, prompts: Sequence[str], *, max_new_tokens: int,
                             temperature: float = 0.0, seed: int = 0, prune: float = 1e-6,
                             max_bytes: int = 32) -> list[str]:
  """Prompts that may end mid-token: bytes drawn from the exact next-byte law (greedy at temperature 0) until one
  tokenization is left and it ends on a token boundary (at most `max_bytes`; then the likeliest aligned one),
  then ordinary generation from those tokens; prompt + continuation as text. The covers start from the canonical
  encoding of the prompt up to its last space (exact for tokenizers that split at whitespace, under a model that
  gives non-canonical encodings no mass: `ByteLevel.state`'s context)."""
  from decode.generate import continue_ids
  from decode.sampling import SamplerConfig
  rng, rows = np.random.default_rng(seed), []
  for prompt in prompts:
    lm = CachedCausalLm(module, params, vocab.cls_id, rows=128,   # parents + the aligned hypotheses stepped
                        max_len=_bucket(len(prompt.encode()) + max_bytes + 8))
    view = ByteLevel.of(lm, vocab, prune=prune, max_hypotheses=64)
    k = prompt.rfind(" ")   # covers start with the canonical encoding before the last space (`ByteLevel.state`)
    state, ended = view.state(prompt, context=vocab.encode(prompt[:k]) if k > 0 else None), False
    for _ in range(max_bytes):
      if len(state.hypotheses) == 1 and not state.hypotheses[0].rest and state.prefix != b"":
        break
      b = _choose(view.next_byte_logprobs(state), temperature, rng)
      if b == END:
        ended = True
        break
      state = view.advance(state, b)
    aligned = [h for h in state.hypotheses if not h.rest] or state.hypotheses
    rows.append(([vocab.cls_id, *max(aligned, key=lambda h: h.logmass).tokens], ended))
  sampler = None if temperature == 0 else SamplerConfig(temperature=temperature)
  ids = continue_ids(module, params, vocab, [r for r, _ in rows], max_new_tokens=max_new_tokens, sampler=sampler,
                     seed=seed)
  return [vocab.decode((r if ended else i)[1:]) for (r, ended), i in zip(rows, ids)]

