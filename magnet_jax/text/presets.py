"""The T5 encoders a MAGNeT checkpoint may name, and the tiny packaged text stack.

:data:`T5_MODELS` is the one table of T5 names: every name audiocraft's ``T5Conditioner`` accepts
(``T5Conditioner.MODELS``), with its hub repo and width. ``"tiny"`` means the 132-piece tokenizer
shipped with the package and a random-init 2-layer T5 of the LM's width (tests, demos, CPU smoke runs;
:func:`magnet_jax.convert.t5.load_text_stack` builds either).
"""
from __future__ import annotations

from pathlib import Path

from magnet_jax.text.t5 import T5EncoderConfig

TINY_TOKENIZER = Path(__file__).parent / "assets" / "tiny_t5_tokenizer"

# audiocraft name -> (hub repo id, d_model). The short "t5-*" ids are also legacy hub ids (a cache filled by
# audiocraft holds models--t5-base); the loader tries the canonical repo first, then the legacy one.
# audiocraft's MODELS_DIMS lists flan-t5-xl / -xxl under wrong keys (a KeyError there); their real widths here.
T5_MODELS = {
    "t5-small": ("google-t5/t5-small", 512),
    "t5-base": ("google-t5/t5-base", 768),
    "t5-large": ("google-t5/t5-large", 1024),
    "t5-3b": ("google-t5/t5-3b", 1024),
    "t5-11b": ("google-t5/t5-11b", 1024),
    "google/flan-t5-small": ("google/flan-t5-small", 512),
    "google/flan-t5-base": ("google/flan-t5-base", 768),
    "google/flan-t5-large": ("google/flan-t5-large", 1024),
    "google/flan-t5-xl": ("google/flan-t5-xl", 2048),
    "google/flan-t5-xxl": ("google/flan-t5-xxl", 4096),
}
HUB_NAMES = {name: repo for name, (repo, _) in T5_MODELS.items()}
WIDTHS = {name: width for name, (_, width) in T5_MODELS.items()}   # d_model


def canonical_t5_name(name: str) -> str | None:
    """The :data:`T5_MODELS` key for an audiocraft name or its hub repo id (``google-t5/t5-base``), else None."""
    if name in T5_MODELS:
        return name
    return next((k for k, (repo, _) in T5_MODELS.items() if repo == name), None)


def t5_hub_candidates(name: str) -> list[str]:
    """Hub repo ids to try for a T5 name: the canonical repo, then the name itself (legacy id / other repo)."""
    key = canonical_t5_name(name)
    ids = [T5_MODELS[key][0]] if key else []
    for n in (key, name):
        if n and n not in ids:
            ids.append(n)
    return ids


def tiny_t5_config(text_dim: int, vocab_size: int) -> T5EncoderConfig:
    return T5EncoderConfig(vocab_size=vocab_size, d_model=text_dim, d_kv=8, d_ff=2 * text_dim, num_layers=2,
                           num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=32)
