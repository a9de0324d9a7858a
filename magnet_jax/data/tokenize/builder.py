"""The TFDS builder that writes the tokenized dataset (ArrayRecord); imported only to build (needs TFDS).

The data is read back without this code: ``tfds.data_source(name, data_dir=OUT)`` or
``tfds.builder_from_directory(OUT/name/VERSION)``.
"""
from __future__ import annotations

import types

import numpy as np
import tensorflow_datasets as tfds

from magnet_jax.data.audio_io import AudioError
from magnet_jax.data.tokenize._paths import write_json
from magnet_jax.data.tokenize.codec_record import codec_info
from magnet_jax.data.tokenize.corpus import TEXT_FIELDS, CorpusItem, NoUsableInputError
from magnet_jax.data.tokenize.encoder import SegmentEncoder, make_example, prefetch
from magnet_jax.data.tokenize.options import DEFAULT_NAME, VERSION, TokenizeOptions
from magnet_jax.data.tokenize.report import Report, kept_entry, summarize
from magnet_jax.data.tokenize.segments import safe_prepare
from magnet_jax.util.user_input import snake_name


def features(num_codebooks: int) -> tfds.features.FeaturesDict:
    """The dataset's features (no TensorFlow needed)."""
    f = {"codes": tfds.features.Tensor(shape=(num_codebooks, None), dtype=np.int16), "num_frames": np.int32}
    f.update({k: tfds.features.Text() for k in TEXT_FIELDS})
    f.update(bpm=np.float32, path=tfds.features.Text(), offset_seconds=np.float32, offset_frames=np.int32,
             duration_seconds=np.float32, sample_rate=np.int32)
    return tfds.features.FeaturesDict(f)


class AudioCodes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """EnCodec codes of an audio corpus; features: codes int16 [K, T], num_frames, description,
    title, genre, moods, keywords, key, instrument, bpm (NaN if unknown), path, offset_seconds, offset_frames,
    duration_seconds, sample_rate (of the source file). Codec in ``info.metadata['codec']``."""
    name = DEFAULT_NAME
    RELEASE_NOTES = {VERSION: "EnCodec codes of an audio corpus (magnet_jax.data.tokenize)."}
    # No dataset package folder (checksums, README): also avoids TFDS's optional
    # importlib_resources lookup for builders defined inside a package.
    code_path = None
    VERSION = tfds.core.Version(VERSION)

    def __init__(self, *, corpus: list[CorpusItem] = (), codec=None, codec_path: str | None = None,
                 options: TokenizeOptions = TokenizeOptions(), beam: bool = False,
                 beam_work_dir: str | None = None, progress: bool = False, source: str = "",
                 _codec_info: dict | None = None, pending_report_path: str | None = None, **kwargs):
        self._corpus = list(corpus)
        self._codec = codec
        self._codec_path = codec_path
        self._codec_info = _codec_info or (codec_info(codec, codec_path) if codec is not None else None)
        self._options = options
        self._beam = beam
        self._beam_work_dir = beam_work_dir
        self._progress = progress
        self._source = source
        self.report = Report()
        self._pending_report_path = pending_report_path
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self):
        ci = self._codec_info
        if ci is None:
            raise ValueError("building needs a codec")
        md = tfds.core.MetadataDict(codec=dict(ci), tokenizer=dict(
            options=self._options.to_json(), source=self._source, version=VERSION,
            policies="see magnet_jax.data.tokenize.segments"))
        return tfds.core.DatasetInfo(
            builder=self, description=(f"EnCodec codes ({ci['num_codebooks']} x {ci['cardinality']}, "
                                       f"{ci['frame_rate']:g} Hz) of an audio corpus."),
            features=features(ci["num_codebooks"]), metadata=md)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        if self._beam:
            from magnet_jax.data.tokenize import beam
            return beam.TokenizeFiles(beam.write_input_shards(self._corpus, self._beam_work_dir), self._codec_path,
                                      self._codec_info, self._options, beam.report_prefix(self._beam_work_dir))
        return self._iter_examples()

    def _iter_examples(self):
        codec, opts = self._codec, self._options
        sr, ch, hop = codec.sample_rate, codec.channels, codec.hop_length
        enc = SegmentEncoder(codec, opts.batch_size, opts.max_pending_segments)
        waiting: dict[int, list] = {}   # item index -> [prepared file, segments not yet encoded]
        bar = None
        if self._progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(self._corpus), desc="tokenizing", unit="file", dynamic_ncols=True)

        def emit(done):
            for (idx, off), cd in done:
                rec = waiting[idx]
                yield make_example(rec[0], off, cd, sr, hop)
                rec[1] -= 1
                if rec[1] == 0:
                    del waiting[idx]

        def fn(item):
            return safe_prepare(item, sr, ch, hop, opts)

        for item, res in prefetch(fn, self._corpus, opts.read_workers):
            if isinstance(res, AudioError):
                self.report.skip(item.index, item.path, res.report_reason())
            else:
                self.report.keep(item.index, kept_entry(res, sr))
                waiting[item.index] = [res, len(res.segments)]
                for off, w in res.segments:
                    yield from emit(enc.add(w, (item.index, off)))
                res.segments = [(o, w[:, :0]) for o, w in res.segments]  # free audio, keep lengths
            if bar is not None:
                bar.update(1)
                bar.set_postfix(kept=len(self.report.kept), skipped=len(self.report.skipped))
        yield from emit(enc.flush())
        if bar is not None:
            bar.close()
        if not any(e["segments"] for _, e in self.report.kept):   # TFDS would only assert "No examples"
            s = summarize(self.report.to_json())
            raise NoUsableInputError(f"no usable input: {s['skipped']} of {s['inputs']} inputs skipped ("
                                     + ", ".join(f"{k} {v}" for k, v in s["skip_reasons"].items())
                                     + f"), {s['kept']} kept with no segment")
        if self._pending_report_path:  # all examples written: lets a re-run finish a run killed after this
            write_json(self._pending_report_path, self.report.to_json())


_BUILDER_CLASSES: dict[str, type] = {DEFAULT_NAME: AudioCodes}


def builder_class(name: str = DEFAULT_NAME) -> type:
    """The builder class for dataset ``name`` (an :class:`AudioCodes` subclass, created once per name and
    not registered in TFDS's registry)."""
    snake_name("name", name)
    if name not in _BUILDER_CLASSES:
        camel = "".join(p.title() for p in name.split("_"))
        _BUILDER_CLASSES[name] = types.new_class(
            camel, (AudioCodes,), {"skip_registration": True},
            lambda ns: ns.update(name=name, __module__=__name__, __qualname__=camel))
    return _BUILDER_CLASSES[name]
