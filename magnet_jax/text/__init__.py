"""Text conditioning: a frozen T5 encoder in Flax NNX and T5 tokenization (reference semantics).

Typical use (loading real weights is :mod:`magnet_jax.convert.t5`)::

    from magnet_jax.convert import load_t5_encoder
    from magnet_jax.text import load_t5_tokenizer, tokenize
    tok = load_t5_tokenizer("google-t5/t5-base")          # or a local folder
    t5 = load_t5_encoder("google-t5/t5-base")             # T5EncoderFn, jitted
    ids, mask = tokenize(tok, ["calm piano", None])        # None / "" -> all-zero mask row
    hidden = t5(ids, mask)                                  # float32 [B, S, 768]

The LM owns the output projection and multiplies the projected states by ``mask``.
"""
from magnet_jax.hub import HubError
from magnet_jax.text.t5 import T5Encoder, T5EncoderConfig, T5EncoderFn, relative_position_buckets
from magnet_jax.text.tokenizer import T5Tokenize, load_t5_tokenizer, tokenize

__all__ = ["HubError", "T5Encoder", "T5EncoderConfig", "T5EncoderFn", "relative_position_buckets", "T5Tokenize",
           "load_t5_tokenizer", "tokenize"]
