"""Constrained decoding on a trained causal LM (configs/causal_lm.py, trained first when --workdir holds no run):
the same prompts and expressions under AWRS particles and under full masking (decode/constrained.py, sequential
Monte Carlo with the same particle count): constraint reads per generated token (masking reads all V), tokens/s
of the whole run, and the share of finished texts that match (must be 1).

  python -m bench.constrained_decoding --workdir=/tmp/causal_lm --particles=8 --repeats=3

The last line: `awrs_reads_per_token=<a> mask_reads_per_token=<b> awrs_tokens_per_s=<c> mask_tokens_per_s=<d>`.
"""
import re
import time

from absl import app, flags

from bench import record

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/causal_lm", "A configs/causal_lm.py run (trained here if absent).")
_PARTICLES = flags.DEFINE_integer("particles", 8, "SMC particles per prompt.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Seeds per prompt and method.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 16, "Token budget per continuation.")

CASES = (("x = ", r"[0-9]{1,4}"), ("import ", r"[a-z_]+( as [a-z_]+)?"), ("def ", r"[a-z_]+\(self\):"),
         ("    return ", r"(True|False|None|self\.[a-z_]+)"), ("# ", r"[A-Z][a-z ]{4,30}\."))


def main(argv):
  del argv
  from decode.bytes import CachedCausalLm, _bucket
  from decode.constrained import compile_regex, constrained_generate
  from bench.trained import trained_causal_lm
  _, exp, step, params = trained_causal_lm(_WORKDIR.value)
  module, vocab = exp.family.module, exp.vocab
  dfas = [(prompt, compile_regex(rx, vocab), rx) for prompt, rx in CASES]
  N, max_new = _PARTICLES.value, _MAX_NEW.value
  out = {}
  for method in ("mask", "awrs", "mask", "awrs"):   # each twice, alternating: the first pass compiles
    reads = tokens = finished = matched = 0
    t = time.perf_counter()
    for prompt, dfa, rx in dfas:
      ids = vocab.encode(prompt)
      for seed in range(_REPEATS.value):
        lm = CachedCausalLm(module, params, vocab.cls_id, rows=2 * N, max_len=_bucket(len(ids) + max_new + 2))
        r = constrained_generate(lm, dfa, num_particles=N, max_new_tokens=max_new, method=method, seed=seed,
                                 prompt=ids)
        n = sum(len(x) for x in r["tokens"])
        reads, tokens = reads + r["calls_per_token"] * n, tokens + n
        for x in r["tokens"]:
          if x and x[-1] == vocab.sep_id:
            finished += 1
            matched += re.fullmatch(rx, vocab.decode(x[:-1])) is not None
    out[method] = {"reads_per_token": reads / tokens, "tokens_per_s": tokens / (time.perf_counter() - t),
                   "finished": finished, "matched_share": matched / max(finished, 1)}
  figures = {"step": step, "vocab_size": vocab.size, "particles": N, "max_new_tokens": max_new,
             "cases": [rx for _, rx in CASES], **{m: v for m, v in out.items()}}
  record.write("constrained_decoding", figures, headline=[
      record.row("constraint reads per generated token, AWRS", out["awrs"]["reads_per_token"],
                 out["mask"]["reads_per_token"], "reads", higher_is_better=False, reference_name="full masking"),
      record.row("constrained SMC decoding, AWRS", out["awrs"]["tokens_per_s"], out["mask"]["tokens_per_s"],
                 "tokens/s", reference_name="full masking")])
  print(f"awrs_reads_per_token={out['awrs']['reads_per_token']:.1f} "
        f"mask_reads_per_token={out['mask']['reads_per_token']:.1f} "
        f"awrs_tokens_per_s={out['awrs']['tokens_per_s']:.1f} mask_tokens_per_s={out['mask']['tokens_per_s']:.1f}",
        flush=True)
  assert out["awrs"]["matched_share"] == 1.0 and out["mask"]["matched_share"] == 1.0, out


if __name__ == "__main__":
  app.run(main)
