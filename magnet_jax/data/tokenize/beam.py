"""The Apache Beam build (imported only when ``beam_options`` are given; needs ``apache-beam``).

Pipeline (returned by the builder's ``_generate_examples``, so TFDS writes the ArrayRecord shards)::

    Create(input shard paths) -> FlatMap(read shard) -> Reshuffle -> ParDo(TokenizeFileFn)
        ParDo --examples--> (key, example) -> TFDS writer
        ParDo --report----> JSON lines -> WriteToText(DATA_DIR/_tokenize_work/.../report/part*)

The driver writes the input list as JSON-lines shards into ``DATA_DIR/_tokenize_work/`` (the graph
carries only their paths, so a Dataflow job graph stays small). Each worker loads the codec once
(``DoFn.setup``, cached per process, weight fingerprint checked against the driver's) and tokenizes
whole files exactly as the single-machine build does. Every input yields one report record; the
driver merges the shards after the pipeline (:func:`merge_report_parts`, de-duplicating records of
retried bundles by input index). Nothing raised by one file escapes the DoFn.
"""
from __future__ import annotations

import json
import os
import threading

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from magnet_jax.data.audio_io import AudioError
from magnet_jax.data.tokenize._paths import write_text
from magnet_jax.data.tokenize.codec_record import CodecMismatchError, codec_fingerprint
from magnet_jax.data.tokenize.corpus import ERROR, CorpusItem, item_from_json, item_to_json
from magnet_jax.data.tokenize.encoder import encode_file
from magnet_jax.data.tokenize.options import TokenizeOptions
from magnet_jax.data.tokenize.report import Report, kept_entry
from magnet_jax.data.tokenize.segments import safe_prepare

REPORT_TAG = "report"
INPUTS_PER_SHARD = 1000
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
            from magnet_jax.convert.encodec import load_encodec
            codec = load_encodec(path)
            got = codec_fingerprint(codec)
            if got != fingerprint:
                raise CodecMismatchError(f"worker loaded codec {path!r} with fingerprint {got}, the driver "
                                         f"had {fingerprint}: the workers see different weights")
            _CODECS[str(path)] = codec
        return codec


class TokenizeFileFn(beam.DoFn):
    """One input file -> its examples (main output) + one report record (``report`` output)."""

    def __init__(self, codec_path: str, fingerprint: str, options: TokenizeOptions):
        self.codec_path = codec_path
        self.fingerprint = fingerprint
        self.options = options
        self.codec = None

    def setup(self):
        self.codec = _get_codec(self.codec_path, self.fingerprint)

    def process(self, item: CorpusItem):
        c, o = self.codec, self.options
        res = safe_prepare(item, c.sample_rate, c.channels, c.hop_length, o)
        if isinstance(res, AudioError):
            yield beam.pvalue.TaggedOutput(REPORT_TAG, {"index": item.index, "path": item.path,
                                                        "reason": res.report_reason()})
            return
        entry = kept_entry(res, c.sample_rate)
        yield from encode_file(c, res, o.batch_size)
        yield beam.pvalue.TaggedOutput(REPORT_TAG, {"index": item.index, **entry})


def write_input_shards(corpus: list[CorpusItem], work_dir: str) -> list[str]:
    """The inputs as JSON-lines shards of :data:`INPUTS_PER_SHARD` items under ``work_dir``."""
    paths = []
    for k in range(0, max(1, len(corpus)), INPUTS_PER_SHARD):
        p = os.path.join(work_dir, "inputs", f"inputs-{k // INPUTS_PER_SHARD:05d}.jsonl")
        write_text(p, "".join(json.dumps(item_to_json(it), ensure_ascii=False) + "\n"
                              for it in corpus[k:k + INPUTS_PER_SHARD]))
        paths.append(p)
    return paths


def read_input_shard(path: str):
    """One JSON-lines shard of :class:`CorpusItem` records."""
    with FileSystems.open(path) as fh:
        for line in fh.read().decode("utf-8").splitlines():
            if line.strip():
                yield item_from_json(json.loads(line))


def report_prefix(work_dir: str) -> str:
    return os.path.join(work_dir, "report", "part")


def merge_report_parts(prefix: str, corpus: list[CorpusItem]) -> Report:
    """The report written by the workers, one record per input (retried bundles de-duplicated)."""
    rep = Report()
    seen = set()
    for m in FileSystems.match([prefix + "*"])[0].metadata_list:
        with FileSystems.open(m.path) as fh:
            for line in fh.read().decode("utf-8").splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                idx = rec.pop("index")
                if idx in seen:  # a retried bundle may write a record twice
                    continue
                seen.add(idx)
                (rep.kept if "segments" in rec else rep.skipped).append((idx, rec))
    for it in corpus:  # should not happen; keeps the report exhaustive if it does
        if it.index not in seen:
            rep.skip(it.index, it.path, f"{ERROR}: no result recorded by the pipeline")
    return rep


def remove_work_dir(work_dir: str) -> None:
    try:
        FileSystems.delete([work_dir])
        if "://" not in work_dir:
            os.rmdir(os.path.dirname(work_dir))  # only if no other build is using it
    except Exception:  # noqa: BLE001 - leftovers are harmless
        pass


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
