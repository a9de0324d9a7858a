"""Offline tokenization: an audio corpus -> EnCodec codes, stored as a TFDS dataset (ArrayRecord).

Modules: :mod:`.corpus` (listing + sidecars), :mod:`.codec_record` (what training checks),
:mod:`.segments` (segment planning), :mod:`.encoder`, :mod:`.report`, :mod:`.builder` (TFDS, imported
only to build), :mod:`.driver` (:func:`tokenize_corpus`), :mod:`.beam` (optional Apache Beam).
"""
from magnet_jax.data.tokenize.codec_record import (
    CodecMismatchError,
    check_codec_compatible,
    codec_fingerprint,
    codec_info,
    find_dataset_dirs,
    read_codec_info,
)
from magnet_jax.data.tokenize.corpus import TEXT_FIELDS, CorpusItem, item_metadata, list_audio_dir, list_manifest
from magnet_jax.data.tokenize.driver import TokenizeResult, tokenize_corpus
from magnet_jax.data.tokenize.options import DEFAULT_NAME, VERSION, TokenizeOptions
from magnet_jax.data.tokenize.report import REPORT_FILENAME, Report, format_summary
from magnet_jax.data.tokenize.segments import PreparedFile, plan_segments, prepare_file

__all__ = ["CodecMismatchError", "check_codec_compatible", "codec_fingerprint", "codec_info", "find_dataset_dirs",
           "read_codec_info", "TEXT_FIELDS", "CorpusItem", "item_metadata", "list_audio_dir", "list_manifest",
           "TokenizeResult", "tokenize_corpus", "DEFAULT_NAME", "VERSION", "TokenizeOptions", "REPORT_FILENAME",
           "Report", "format_summary", "PreparedFile", "plan_segments", "prepare_file"]
