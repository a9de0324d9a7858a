"""The text stack (tokenizer + frozen T5 encoder) named by a config's ``text.name``.

* a hub id or local folder (``t5-base`` -> ``google-t5/t5-base``, ``t5-large``, ...): real weights;
* ``"tiny"``: a 132-piece tokenizer shipped with the package and a random-init 2-layer T5 of width
  ``text_dim`` (seeded, so every process and every run gets the same encoder). For tests, demos and
  the CPU training smoke run; it needs no download.
"""
from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
from flax import nnx

from magnet_jax.text.t5 import T5Encoder, T5EncoderConfig, T5EncoderFn, load_t5_encoder
from magnet_jax.text.tokenizer import load_t5_tokenizer

TINY_TOKENIZER = Path(__file__).parent / "assets" / "tiny_t5_tokenizer"
HUB_NAMES = {"t5-small": "google-t5/t5-small", "t5-base": "google-t5/t5-base", "t5-large": "google-t5/t5-large",
             "t5-3b": "google-t5/t5-3b", "t5-11b": "google-t5/t5-11b"}


def tiny_t5_config(text_dim: int, vocab_size: int) -> T5EncoderConfig:
    return T5EncoderConfig(vocab_size=vocab_size, d_model=text_dim, d_kv=8, d_ff=2 * text_dim, num_layers=2,
                           num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=32)


def load_text_stack(name: str, text_dim: int, *, dtype=jnp.float32, seed: int = 1234):
    """(tokenizer, T5EncoderFn) for ``name`` (see module docstring); checks the width is ``text_dim``."""
    if name in ("", "tiny"):
        tok = load_t5_tokenizer(str(TINY_TOKENIZER))
        enc = T5EncoderFn(T5Encoder(tiny_t5_config(text_dim, len(tok)), dtype=dtype, rngs=nnx.Rngs(seed)))
    else:
        source = HUB_NAMES.get(name, name)
        tok = load_t5_tokenizer(source)
        enc = load_t5_encoder(source, dtype=dtype)
    if enc.dim != text_dim:
        raise ValueError(f"text encoder {name!r} has width {enc.dim}, but the LM expects text_dim={text_dim}")
    return tok, enc
