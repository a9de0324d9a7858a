"""Apache Beam half of :mod:`magnet_jax.data.tokenize` (imported only when ``beam_options`` are given).

Pipeline (returned by the builder's ``_generate_examples``, so TFDS writes the ArrayRecord shards)::

    Create(input shard paths) -> FlatMap(read shard) -> Reshuffle -> ParDo(TokenizeFileFn)
        ParDo --examples--> (key, example) -> TFDS writer
        ParDo --report----> JSON lines -> WriteToText(DATA_DIR/_tokenize_work/.../report/part*)

The driver writes the input list as JSON-lines shards into ``DATA_DIR/_tokenize_work/`` (the
graph carries only their paths). Each worker loads the codec once (``DoFn.setup``, cached per
process, weight fingerprint checked against the driver's) and tokenizes whole files:
the segments of one file are batched together by length (zero rows pad the batch to a power of
two), so the codes are the same as in the single-machine build. Every input yields exactly one
report record (``kept`` with its segment count, or ``skipped`` with a reason); the driver merges
the shards after the pipeline (:func:`magnet_jax.data.tokenize._merge_report_parts`,
de-duplicating records of retried bundles by input index). Nothing raised by one file escapes the
DoFn, so bad inputs never fail the pipeline.
"""
from __future__ import annotations

import json
import threading

import apache_beam as beam

from . import tokenize as tok

REPORT_TAG = "report"
_CODECS: dict[str, object] = {}
_LOCK = threading.Lock()


def register_codec(path: str, codec) -> None:
    """Make an already loaded codec available to DoFns running in this process."""
    with _LOCK:
        _CODECS[str(path)] = codec


def _get_codec(path: str, fingerprint: str):
    with _LOCK:
        codec = _CODECS.get(str(path))
        if codec is None:
            from ..codec import load_encodec
            codec = load_encodec(path)
            got = tok.codec_fingerprint(codec)
            if got != fingerprint:
                raise tok.CodecMismatchError(f"worker loaded codec {path!r} with fingerprint {got}, the driver "
                                             f"had {fingerprint}: the workers see different weights")
            _CODECS[str(path)] = codec
        return codec


class TokenizeFileFn(beam.DoFn):
    """One input file -> its examples (main output) + one report record (``report`` output)."""

    def __init__(self, codec_path: str, fingerprint: str, options: tok.TokenizeOptions):
        self.codec_path = codec_path
        self.fingerprint = fingerprint
        self.options = options
        self.codec = None

    def setup(self):
        self.codec = _get_codec(self.codec_path, self.fingerprint)

    def process(self, item: tok.CorpusItem):
        c, o = self.codec, self.options
        res = tok.safe_prepare(item, c.sample_rate, c.channels, c.hop_length, o)
        if isinstance(res, tok.AudioError):
            yield beam.pvalue.TaggedOutput(REPORT_TAG, {"index": item.index, "path": item.path,
                                                        "reason": res.report_reason()})
            return
        entry = tok.kept_entry(res, c.sample_rate)
        yield from tok.encode_file(c, res, o.batch_size)
        yield beam.pvalue.TaggedOutput(REPORT_TAG, {"index": item.index, **entry})


def read_input_shard(path: str):
    """One JSON-lines shard of :class:`~magnet_jax.data.tokenize.CorpusItem` records."""
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(path) as fh:
        for line in fh.read().decode("utf-8").splitlines():
            if line.strip():
                yield tok.item_from_json(json.loads(line))


class TokenizeFiles(beam.PTransform):
    """PBegin -> PCollection of ``(key, example)``; writes the report shards as a side branch."""

    def __init__(self, input_shards, codec_path, codec_info, options, report_prefix):
        super().__init__()
        self.input_shards = list(input_shards)
        self.codec_path = codec_path
        self.codec_info = dict(codec_info)
        self.options = options
        self.report_prefix = report_prefix

    def expand(self, pbegin):
        out = (pbegin
               | "InputShards" >> beam.Create(self.input_shards)
               | "Inputs" >> beam.FlatMap(read_input_shard)
               | "Distribute" >> beam.Reshuffle()
               | "Tokenize" >> beam.ParDo(TokenizeFileFn(self.codec_path, self.codec_info["fingerprint"],
                                                         self.options)).with_outputs(REPORT_TAG, main="examples"))
        _ = (out[REPORT_TAG]
             | "ReportJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False))
             | "WriteReport" >> beam.io.WriteToText(self.report_prefix, file_name_suffix=".jsonl"))
        return out.examples
