"""Data: audio I/O, offline tokenization into TFDS (ArrayRecord) datasets of EnCodec codes, the input pipeline.

* :mod:`magnet_jax.data.audio_io` -- read / validate / down-mix / resample / level audio files.
* :mod:`magnet_jax.data.tokenize` -- the tokenizer package (corpus, codec record, segments, encoder,
  report, TFDS builder, driver, Beam).
* :mod:`magnet_jax.data.input_pipeline` -- the Grain training input pipeline (import it directly).
"""
from magnet_jax.data.audio_io import AudioError, LevelOptions, load_audio, read_audio
from magnet_jax.data.tokenize import (
    CodecMismatchError,
    TokenizeOptions,
    check_codec_compatible,
    codec_info,
    list_audio_dir,
    list_manifest,
    read_codec_info,
    tokenize_corpus,
)

__all__ = ["AudioError", "LevelOptions", "load_audio", "read_audio", "CodecMismatchError", "TokenizeOptions",
           "check_codec_compatible", "codec_info", "list_audio_dir", "list_manifest", "read_codec_info",
           "tokenize_corpus"]
