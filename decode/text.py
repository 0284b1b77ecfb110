"""The causal LM's `--mode=decode` hook: prompts in, prompt + continuation texts out, with the prompt's end read
as the tokenizer encodes it (decode/generate.py), healed (token healing) or as bytes (decode/bytes.py)."""
from typing import Any, Callable

from decode import bytes as byte_lm
from decode.generate import generate_texts
from decode.sampling import SamplerConfig

PROMPT_ENDS = ("tokens", "heal", "bytes")


def text_decoder(model: Any, vocab: Any, *, max_new_tokens: int, sampler: SamplerConfig | None, seed: int,
                 max_positions: int | None = None, prompt_end: str = "tokens") -> Callable:
  """A causal LM's `--mode=decode` hook: (params, prompts, mesh) -> prompt + continuation texts. `prompt_end`:
  "tokens" reads the prompt as the tokenizer encodes it; "heal" backs off its last token and constrains the next
  (token healing, decode/bytes.py); "bytes" continues it from the exact next-byte law until a token boundary
  (decode/bytes.py), so a prompt that ends mid-token is read as text. `max_positions`: a learned position
  table's size, checked (one line) before anything runs."""
  if prompt_end not in PROMPT_ENDS:
    raise ValueError(f"decode.prompt_end={prompt_end!r}: use one of {list(PROMPT_ENDS)}")
  if prompt_end != "tokens":
    vocab.token_bytes()   # a vocabulary without a byte-level view says so now
  temperature = 0.0 if sampler is None else sampler.temperature

  def check(prompts):
    for p in prompts:
      n = 1 + len(vocab.encode(p)) + max_new_tokens
      if max_positions is not None and n > max_positions:
        raise ValueError(f"prompt {p[:40]!r}... needs {n} positions with decode.max_new_tokens={max_new_tokens}, "
                         f"more than model.max_position_embeddings={max_positions}; shorten it or lower "
                         "decode.max_new_tokens")

  def decode(params, prompts, mesh=None):
    check(prompts)
    if prompt_end == "tokens":
      return generate_texts(model, params, vocab, list(prompts), max_new_tokens=max_new_tokens, sampler=sampler,
                            seed=seed, mesh=mesh)
    run = byte_lm.healed_continuations if prompt_end == "heal" else byte_lm.byte_level_continuations
    return run(model, params, vocab, list(prompts), max_new_tokens=max_new_tokens, temperature=temperature,
               seed=seed)

  decode.check = check
  return decode
