"""Data: offline tokenization of audio corpora into TFDS (ArrayRecord) datasets of EnCodec codes.

* :mod:`magnet_jax.data.audio_io` -- read / validate / down-mix / resample / level audio files.
* :mod:`magnet_jax.data.tokenize` -- corpus listing, segmenting, batched encoding, the TFDS
  builder, the report, and the codec record (:func:`read_codec_info`,
  :func:`check_codec_compatible`) that training uses to refuse a dataset made with another codec.
* :mod:`magnet_jax.data.tokenize_beam` -- the Apache Beam pipeline (optional ``apache-beam``).

Names are imported lazily so that ``import magnet_jax.data`` stays cheap.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "AudioError": "audio_io", "LevelOptions": "audio_io", "load_audio": "audio_io", "read_audio": "audio_io",
    "TokenizeOptions": "tokenize", "tokenize_corpus": "tokenize", "read_codec_info": "tokenize",
    "check_codec_compatible": "tokenize", "CodecMismatchError": "tokenize", "list_manifest": "tokenize",
    "list_audio_dir": "tokenize", "builder_class": "tokenize", "codec_info": "tokenize",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
