"""Tokenize an audio corpus into a TFDS (ArrayRecord) dataset of EnCodec codes.

    python tools/tokenize_dataset.py --manifest=FILE.jsonl | --audio_dir=DIR \\
        --codec=<hub id | local dir> --data_dir=OUT [--report=FILE] [--name=NAME]

Read it back (no TensorFlow): ``tfds.data_source(NAME, data_dir=OUT, split="train")``.
Scale out with Apache Beam: ``--beam_options="--runner=DataflowRunner --project=... ..."``.
All policies (segments, loudness, silence, report, re-runs) are documented in
the ``magnet_jax/data/tokenize/`` package; this file only parses flags.
"""
from __future__ import annotations

import shlex

from absl import flags

from magnet_jax.data.tokenize.options import DEFAULT_NAME, TokenizeOptions
from magnet_jax.util.cli import run, usage_error

_D = TokenizeOptions()
FLAGS = flags.FLAGS
flags.DEFINE_string("manifest", None, "audiocraft-style .jsonl(.gz) manifest (path, duration, sample_rate, ...)")
flags.DEFINE_string("audio_dir", None, "folder of audio files (with optional .json sidecars)")
flags.DEFINE_string("codec", None, "EnCodec hub id (e.g. facebook/encodec_32khz) or local folder / file")
flags.DEFINE_string("data_dir", None, "TFDS data_dir to write NAME/VERSION/ into")
flags.DEFINE_string("report", None, "report JSON path (default DATA_DIR/tokenize_report.json)")
flags.DEFINE_string("name", DEFAULT_NAME, "dataset name (snake_case)")
flags.DEFINE_float("segment_seconds", _D.segment_seconds,
                   "stored segment length; longer files are split into overlapping segments")
flags.DEFINE_float("overlap_seconds", None, "overlap of consecutive segments, >= the training window for crops at "
                   "any offset (default: min(30, segment_seconds / 2))")
flags.DEFINE_float("min_seconds", _D.min_seconds, "shorter files are skipped (too_short)")
flags.DEFINE_float("length_quantum_seconds", _D.length_quantum_seconds, "files shorter than a segment are "
                   "zero-padded to a multiple of this for encoding (bounds the compiled shapes)")
flags.DEFINE_enum("normalize", _D.level.normalize, ["none", "peak", "rms"],
                  "loudness normalisation (clipping guard always on)")
flags.DEFINE_float("peak_db", _D.level.peak_db, "target peak for --normalize=peak (dBFS)")
flags.DEFINE_float("rms_db", _D.level.rms_db, "target RMS for --normalize=rms (dBFS)")
flags.DEFINE_string("silence_db", f"{_D.level.silence_db:g}",
                    "RMS level (dBFS) below which clips / segments count as silent; 'none' keeps all")
flags.DEFINE_integer("batch_size", _D.batch_size, "segments per encoder call")
flags.DEFINE_integer("read_workers", _D.read_workers, "threads decoding / resampling ahead of the encoder")
flags.DEFINE_boolean("overwrite", False, "rebuild even if NAME/VERSION already exists in DATA_DIR")
flags.DEFINE_string("beam_options", None, "run as an Apache Beam pipeline with these pipeline arguments, e.g. "
                    "'--runner=DirectRunner --direct_num_workers=2'")
flags.DEFINE_boolean("progress", True, "show a progress bar")
flags.mark_flags_as_required(["codec", "data_dir"])
flags.mark_flags_as_mutual_exclusive(["manifest", "audio_dir"], required=True)


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}: every option is a --flag (see --help)")
    import tensorflow_datasets as tfds

    from magnet_jax.data.audio_io import LevelOptions
    from magnet_jax.data.tokenize import CodecMismatchError, format_summary, tokenize_corpus
    from magnet_jax.data.tokenize.corpus import CorpusError
    from magnet_jax.data.tokenize.lock import BuildLockedError

    try:
        silence = None if FLAGS.silence_db.strip().lower() in ("none", "off", "") else float(FLAGS.silence_db)
        opts = TokenizeOptions(
            segment_seconds=FLAGS.segment_seconds, overlap_seconds=FLAGS.overlap_seconds,
            min_seconds=FLAGS.min_seconds, length_quantum_seconds=FLAGS.length_quantum_seconds,
            batch_size=FLAGS.batch_size, read_workers=FLAGS.read_workers,
            level=LevelOptions(normalize=FLAGS.normalize, peak_db=FLAGS.peak_db, rms_db=FLAGS.rms_db,
                               silence_db=silence))
    except ValueError as e:
        usage_error(str(e))
    tfds.disable_progress_bar()
    try:
        result = tokenize_corpus(
            codec=FLAGS.codec, data_dir=FLAGS.data_dir, manifest=FLAGS.manifest, audio_dir=FLAGS.audio_dir,
            name=FLAGS.name, report_path=FLAGS.report, options=opts, overwrite=FLAGS.overwrite,
            beam_options=shlex.split(FLAGS.beam_options) if FLAGS.beam_options else None, progress=FLAGS.progress)
    except (CorpusError, BuildLockedError, CodecMismatchError) as e:  # user errors: one line, exit 2
        usage_error(" ".join(str(e).split()))
    print(format_summary(result))


if __name__ == "__main__":
    run(main)
