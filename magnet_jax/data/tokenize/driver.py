"""The tokenize job: corpus -> TFDS dataset ``DATA_DIR/NAME/VERSION`` + report (``tools/tokenize_dataset.py``).

No TensorFlow is needed, neither to build nor to read the dataset.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time

from magnet_jax.data.segment_index import INDEX_FILENAME, build_index
from magnet_jax.data.tokenize._paths import exists, is_remote, read_json_file, write_json
from magnet_jax.data.tokenize.codec_record import (
    CodecMismatchError,
    check_codec_compatible,
    codec_info,
    read_codec_info,
)
from magnet_jax.data.tokenize.corpus import CorpusError, NoUsableInputError, list_audio_dir, list_manifest
from magnet_jax.data.tokenize.lock import BuildLock
from magnet_jax.data.tokenize.options import DEFAULT_NAME, VERSION, TokenizeOptions
from magnet_jax.data.tokenize.report import REPORT_FILENAME
from magnet_jax.util.user_input import UserError, one_line

log = logging.getLogger(__name__)


def write_index(dataset_dir: str) -> None:
    """The file -> segments index the input pipeline crops with (read back from the finished dataset)."""
    import tensorflow_datasets as tfds
    src = tfds.builder_from_directory(dataset_dir).as_data_source("train")
    write_json(os.path.join(dataset_dir, INDEX_FILENAME), build_index(src).to_json())


@dataclasses.dataclass
class TokenizeResult:
    report: dict
    dataset_dir: str
    report_path: str
    reused: bool
    seconds: float


def _clean_stale_incomplete(data_dir: str, name: str, version: str) -> None:
    """Remove incomplete builds of killed runs (called with the dataset's lock held: no live run owns them)."""
    parent = os.path.join(data_dir, name)
    if is_remote(data_dir) or not os.path.isdir(parent):
        return
    for d in os.listdir(parent):
        if d.startswith("incomplete.") and d.endswith("_" + version):
            log.warning("removing the incomplete build of an earlier, interrupted run: %s", os.path.join(parent, d))
            shutil.rmtree(os.path.join(parent, d), ignore_errors=True)


def _previous_path(dataset_dir: str) -> str:
    """Where ``overwrite`` keeps the existing dataset while its replacement is built (not a version folder)."""
    return os.path.join(os.path.dirname(dataset_dir), f".previous_{os.path.basename(dataset_dir)}")


def _recover_previous(dataset_dir: str) -> None:
    """A run killed while rebuilding with ``overwrite``: restore the old dataset when the new one was not
    swapped in yet, else drop it (called with the dataset's lock held)."""
    prev = _previous_path(dataset_dir)
    if is_remote(dataset_dir) or not os.path.isdir(prev):
        return
    if os.path.exists(dataset_dir):
        shutil.rmtree(prev, ignore_errors=True)
    else:
        log.warning("restoring %s, kept aside by an interrupted --overwrite rebuild", dataset_dir)
        os.replace(prev, dataset_dir)


def check_outputs(data_dir: str, report_path: str) -> None:
    """The output locations, checked before any file is encoded."""
    if is_remote(data_dir):
        return
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise CorpusError(f"--data_dir={data_dir!r} is a file, not a folder")
    if os.path.isdir(report_path):
        raise CorpusError(f"--report={report_path!r} is a folder: give a file path, e.g. {report_path}/report.json")
    parent = os.path.dirname(os.path.abspath(report_path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise CorpusError(f"--report={report_path!r}: {parent!r} is a file, not a folder")


def _pending_report_path(data_dir: str, name: str) -> str:
    return os.path.join(data_dir, name, f".{VERSION}.report.pending.json")


def _beam_work_dir(data_dir: str, name: str) -> str:
    return os.path.join(data_dir, "_tokenize_work", f"{name}-{VERSION}")


def _remove(path: str) -> None:
    if is_remote(path):
        return
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def _finalize(report: dict, dataset_dir: str, report_path: str, data_dir: str, name: str) -> None:
    """Index + reports of a finished build; the run's pending records are removed last."""
    write_index(dataset_dir)
    write_json(os.path.join(dataset_dir, REPORT_FILENAME), report)
    write_json(report_path, report)
    _remove(_pending_report_path(data_dir, name))
    if os.path.isdir(_beam_work_dir(data_dir, name)):
        from magnet_jax.data.tokenize import beam
        beam.remove_work_dir(_beam_work_dir(data_dir, name))


def _finish_interrupted(corpus, dataset_dir: str, data_dir: str, name: str) -> dict:
    """The report of a build killed after TFDS finished the dataset but before the report was written: the
    pending report the builder wrote when all examples were out (or the Beam workers' report parts),
    checked against the dataset."""
    import tensorflow_datasets as tfds
    report = read_json_file(_pending_report_path(data_dir, name))
    work = _beam_work_dir(data_dir, name)
    if report is None and os.path.isdir(os.path.join(work, "report")):
        from magnet_jax.data.tokenize import beam
        report = beam.merge_report_parts(beam.report_prefix(work), corpus).to_json()
    if report is None:
        raise FileNotFoundError(f"{dataset_dir} exists but has no {REPORT_FILENAME} and no record of the run that "
                                f"built it; rebuild it with --overwrite")
    n = len(tfds.builder_from_directory(dataset_dir).as_data_source("train"))
    if n != report["summary"]["segments"]:
        raise ValueError(f"{dataset_dir} holds {n} examples but the interrupted run recorded "
                         f"{report['summary']['segments']}; rebuild it with --overwrite")
    log.warning("finishing the interrupted run that built %s (its report was not written)", dataset_dir)
    return report


# Re-runs: TFDS writes into ``NAME/incomplete.XXXXXX_VERSION`` and renames it only at the end, so a
# crashed build leaves no half dataset; re-running redoes the build. A run killed after that rename but
# before the report was written is finished by the re-run (verified against the dataset). Re-running after
# success with the same data_dir, name and version is a no-op that re-emits the stored report (after checking
# the codec is the same; the corpus is *not* compared: a changed corpus needs overwrite=True or another name).
# One run per dataset at a time (:mod:`.lock`). Finer-grained resumption is deliberately not attempted: for
# corpora where a redo is too costly, use Beam, whose runners retry failed work items.
def tokenize_corpus(*, codec, data_dir: str, manifest: str | None = None, audio_dir: str | None = None,
                    name: str = DEFAULT_NAME, report_path: str | None = None,
                    options: TokenizeOptions = TokenizeOptions(), beam_options=None, overwrite: bool = False,
                    progress: bool = False, codec_path: str | None = None) -> TokenizeResult:
    """Tokenize a corpus into the TFDS dataset ``data_dir/name/VERSION`` and write the report.

    ``codec``: a hub id or local path (see :func:`magnet_jax.convert.encodec.load_encodec`), or a loaded
    ``Encodec`` together with ``codec_path``, where it was loaded from (recorded in the dataset,
    and what Beam workers load). ``beam_options``: a list of Beam pipeline arguments or
    ``PipelineOptions``; when given, the build runs as a Beam pipeline.
    """
    import tensorflow_datasets as tfds

    from magnet_jax.data.tokenize.builder import builder_class
    t0 = time.perf_counter()
    if (manifest is None) == (audio_dir is None):
        raise ValueError("give exactly one of manifest= or audio_dir=")
    data_dir = os.fspath(data_dir)
    report_path = report_path or os.path.join(data_dir, REPORT_FILENAME)
    check_outputs(data_dir, report_path)
    corpus = list_manifest(manifest) if manifest is not None else list_audio_dir(audio_dir)
    source = os.path.abspath(manifest) if manifest is not None else os.path.abspath(audio_dir)
    cls = builder_class(name)
    if isinstance(codec, (str, os.PathLike)):
        from magnet_jax.convert.encodec import load_encodec
        from magnet_jax.hub import HubError
        codec_path = os.fspath(codec)
        try:
            codec = load_encodec(codec_path)
        except (HubError, ValueError, OSError) as e:      # missing, not a codec, unreadable
            raise UserError(f"--codec={codec_path!r}: {one_line(e)}") from None
    if beam_options is not None and not codec_path:
        raise ValueError("Beam workers load the codec themselves: pass codec as a hub id or path")
    info = codec_info(codec, codec_path)
    work_dir = _beam_work_dir(data_dir, name) if beam_options is not None else None
    builder = cls(data_dir=data_dir, corpus=corpus, codec=codec, codec_path=codec_path, options=options,
                  beam=beam_options is not None, beam_work_dir=work_dir, progress=progress, source=source,
                  _codec_info=info, pending_report_path=_pending_report_path(data_dir, name))
    dataset_dir = os.fspath(builder.data_dir)
    with BuildLock(data_dir, name, VERSION):
        _recover_previous(dataset_dir)
        if exists(os.path.join(dataset_dir, "dataset_info.json")) and not overwrite:
            try:
                check_codec_compatible(read_codec_info(dataset_dir), info)
            except CodecMismatchError as e:
                raise CodecMismatchError(f"{dataset_dir} exists and {e} Use overwrite=True (--overwrite) or another "
                                         f"name.") from None
            stored = read_json_file(os.path.join(dataset_dir, REPORT_FILENAME))
            if stored is None:
                out = _finish_interrupted(corpus, dataset_dir, data_dir, name)
                out["summary"].update(dataset_dir=dataset_dir, codec=info["path"] or info["name"], reused=False,
                                      finished_after_interruption=True)
                _finalize(out, dataset_dir, report_path, data_dir, name)
                return TokenizeResult(out, dataset_dir, report_path, False, time.perf_counter() - t0)
            stored.setdefault("summary", {}).update(reused=True)
            if os.path.abspath(report_path) != os.path.abspath(os.path.join(dataset_dir, REPORT_FILENAME)):
                write_json(report_path, stored)
            return TokenizeResult(stored, dataset_dir, report_path, True, time.perf_counter() - t0)
        _clean_stale_incomplete(data_dir, name, VERSION)
        _remove(_pending_report_path(data_dir, name))
        if beam_options is not None:
            from magnet_jax.data.tokenize import beam
            _remove(work_dir)  # report parts of an earlier, killed run
            beam.register_codec(codec_path, codec)  # in-process runners reuse the loaded codec
            if isinstance(beam_options, (list, tuple)):
                from apache_beam.options.pipeline_options import PipelineOptions
                beam_options = PipelineOptions(list(beam_options))
        gm = tfds.download.GenerateMode
        # overwrite: the existing dataset is kept aside and dropped only once its replacement is complete
        previous = _previous_path(dataset_dir) if overwrite and not is_remote(dataset_dir) else None
        if previous is not None and os.path.isdir(dataset_dir):
            os.replace(dataset_dir, previous)
        mode = gm.FORCE_REDOWNLOAD if overwrite and previous is None else gm.REUSE_DATASET_IF_EXISTS
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                download_mode=mode, beam_options=beam_options))
        except BaseException as e:
            if previous is not None and os.path.isdir(previous) and not os.path.exists(dataset_dir):
                os.replace(previous, dataset_dir)
                log.warning("the rebuild failed: %s is left as it was", dataset_dir)
            if isinstance(e, NoUsableInputError):
                write_json(report_path, builder.report.to_json(dict(dataset_dir=None, reused=False)))
                raise NoUsableInputError(f"{e}; nothing written, report: {report_path}") from None
            raise
        report = beam.merge_report_parts(beam.report_prefix(work_dir), corpus) if beam_options is not None \
            else builder.report
        out = report.to_json(dict(dataset_dir=dataset_dir, codec=info["path"] or info["name"], reused=False,
                                  wall_seconds=round(time.perf_counter() - t0, 2)))
        _finalize(out, dataset_dir, report_path, data_dir, name)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    return TokenizeResult(out, dataset_dir, report_path, False, time.perf_counter() - t0)
