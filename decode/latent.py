"""Decoding sentences from the latent points of a sentence autoencoder or VAE (models/sentence_vae): greedy, one
decoder step per position in a `lax.scan`, rows stop at EOS. Legend: B batch, Z latent, L positions."""
import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("module",))
def latent_means(module, params, tokens_BL, segment_ids_BL):
  """The encoder's mean latent [B, Z] of each framed sentence ([CLS] words [SEP], padding segment 0)."""
  return module.apply({"params": params}, tokens_BL, segment_ids_BL, method=module.encode)[0]


@functools.partial(jax.jit, static_argnames=("module", "maxlen", "bos", "eos", "pad"))
def greedy_from_latent(module, params, z_BZ, *, maxlen: int, bos: int, eos: int, pad: int):
  """Tokens [B, maxlen] after BOS: the most likely token at each step given z, `pad` after EOS (the row's EOS is
  kept); a row without EOS ran out of positions."""
  B = z_BZ.shape[0]
  h = module.apply({"params": params}, z_BZ, method=module.decoder_init)

  def body(carry, _):
    h, tok, done = carry
    logits, h = module.apply({"params": params}, h, z_BZ, tok, method=module.decoder_step)
    nxt = jnp.where(done, pad, jnp.argmax(logits, axis=-1).astype(jnp.int32))
    return (h, nxt, done | (nxt == eos)), nxt

  _, out = jax.lax.scan(body, (h, jnp.full((B,), bos, jnp.int32), jnp.zeros((B,), bool)), None, length=maxlen)
  return out.T
