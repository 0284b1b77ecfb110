"""The causal LM's `--mode=decode` hook: prompts in, prompt + continuation texts out, with the prompt's end read
as the tokenizer encodes it (decode/generate.py), healed (token healing) or as bytes (decode/bytes.py)."""
from typing import Any, Callable

from decode import bytes as byte_lm
from decode.generate import generate_texts
from decode.sampling import SamplerConfig

PROMPT_ENDS = ("tokens", "heal", "bytes")


def text_decoder(model: Any, vocab: Any, *, max_new_tokens: int, sampler: SamplerConfig | None, seed: int,
                 max_positions: int | None = None, prompt_end: str = "tokens", regex: str = "",
                 particles: int = 8) -> Callable:
  """A causal LM's `--mode=decode` hook: (params, prompts, mesh) -> prompt + continuation texts. `prompt_end`:
  "tokens" reads the prompt as the tokenizer encodes it; "heal" backs off its last token and constrains the next
  (token healing, decode/bytes.py); "bytes" continues it from the exact next-byte law until a token boundary
  (decode/bytes.py), so a prompt that ends mid-token is read as text. `max_positions`: a learned position
  table's size, checked (one line) before anything runs. `regex`: the continuation must match it whole
  (decode/constrained.py: AWRS particles under sequential Monte Carlo; the finished particle of highest weight is
  shown); an expression no text can match is one line here."""
  if prompt_end not in PROMPT_ENDS:
    raise ValueError(f"decode.prompt_end={prompt_end!r}: use one of {list(PROMPT_ENDS)}")
  if prompt_end != "tokens":
    vocab.token_bytes()   # a vocabulary without a byte-level view says so now
  temperature = 0.0 if sampler is None else sampler.temperature
  dfa = None
  if regex:
    from decode import constrained
    if prompt_end != "tokens":
      raise ValueError("decode.regex constrains the continuation of the prompt's tokens: leave decode.prompt_end "
                       f"at 'tokens' (now {prompt_end!r})")
    dfa = constrained.compile_regex(regex, vocab)

  def check(prompts):
    for p in prompts:
      n = 1 + len(vocab.encode(p)) + max_new_tokens
      if max_positions is not None and n > max_positions:
        raise ValueError(f"prompt {p[:40]!r}... needs {n} positions with decode.max_new_tokens={max_new_tokens}, "
                         f"more than model.max_position_embeddings={max_positions}; shorten it or lower "
                         "decode.max_new_tokens")

  def decode(params, prompts, mesh=None):
    check(prompts)
    if dfa is not None:
      return [p + _constrained(model, params, vocab, dfa, p, max_new_tokens, particles, seed) for p in prompts]
    if prompt_end == "tokens":
      return generate_texts(model, params, vocab, list(prompts), max_new_tokens=max_new_tokens, sampler=sampler,
                            seed=seed, mesh=mesh)
    run = byte_lm.healed_continuations if prompt_end == "heal" else byte_lm.byte_level_continuations
    return run(model, params, vocab, list(prompts), max_new_tokens=max_new_tokens, temperature=temperature,
               seed=seed)

  decode.check = check
  return decode


def _constrained(model, params, vocab, dfa, prompt, max_new_tokens, particles, seed) -> str:
  from decode import constrained
  ids = vocab.encode(prompt)
  lm = byte_lm.CachedCausalLm(model, params, vocab.cls_id, rows=2 * particles,
                              max_len=byte_lm._bucket(len(ids) + max_new_tokens + 2))
  out = constrained.constrained_generate(lm, dfa, num_particles=particles, max_new_tokens=max_new_tokens,
                                         seed=seed, prompt=ids)
  finished = [i for i, w in enumerate(out["log_weights"]) if w > -float("inf")]
  if not finished:
    raise ValueError(f"no continuation of {prompt[:40]!r} matched decode.regex={dfa.pattern!r} within "
                     f"decode.max_new_tokens={max_new_tokens} (tried {particles} particles); raise them")
  best = max(finished, key=lambda i: out["log_weights"][i])
  return vocab.decode(out["tokens"][best][:-1])
