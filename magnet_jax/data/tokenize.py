"""Offline tokenization: an audio corpus -> EnCodec codes, stored as a TFDS dataset (ArrayRecord).

Entry point: :func:`tokenize_corpus` (the CLI ``tools/tokenize_dataset.py`` is a thin wrapper).
No TensorFlow is needed, neither to build nor to read the dataset
(``tfds.data_source(name, data_dir=OUT)`` or ``tfds.builder_from_directory(OUT/name/VERSION)``).

Input corpus
------------
* an **audiocraft manifest** (``.jsonl`` or ``.jsonl.gz``): one JSON object per line with ``path``
  (relative paths resolve against the manifest's folder), ``duration`` and ``sample_rate``
  (informational: the file itself is authoritative), optional ``description`` and any of the
  metadata fields below; or
* an **audio folder**: every regular, non-hidden file below it (sorted), except ``.json`` sidecars.
  Files without an audio extension (:data:`~magnet_jax.data.audio_io.AUDIO_EXTENSIONS`) are
  reported as skipped (``unsupported_extension``).

Metadata: a sidecar ``<audio path without extension>.json`` may hold ``description``, ``title``,
``genre``, ``moods``, ``keywords`` (lists are joined with ", "), ``bpm`` and ``key``. Non-empty
fields of the manifest line take precedence over the sidecar. A malformed sidecar is ignored
(the clip is kept without its metadata) -- metadata problems never cost audio.

Per-file policy (see :mod:`magnet_jax.data.audio_io` for decoding, down-mixing, resampling,
the loudness policy and silence): every input ends up either *kept* (>= 1 segment written) or
*skipped* with a reason, and appears exactly once in the report.

Segmenting policy
-----------------
Let ``hop`` be the codec hop length. Segment lengths are multiples of ``hop``, so every segment
starts on a codec frame boundary of the whole file (``offset_frames``):

* a file is cut into consecutive segments of ``S = segment_seconds`` (default 30 s, rounded to a
  multiple of ``hop``) starting at 0;
* the remainder after the last full segment is rounded *down* to a multiple of
  ``Q = length_quantum_seconds`` (default 1 s) and kept as a shorter final segment if that is at
  least ``min_seconds`` (default 1 s), otherwise dropped (so less than ``max(Q, min_seconds)`` of
  audio is lost at the end of a file);
* a file shorter than ``min_seconds`` (or leaving no segment after this rounding) is skipped
  (``too_short``);
* segments whose RMS level is below ``silence_db`` are dropped (counted in the report entry as
  ``dropped_silent_segments``); a file left without segments is skipped (``silent``).

Encoding: exact lengths, static shapes
--------------------------------------
EnCodec is not causal for the released music codecs: zero-padding a segment to a longer length
changes the codes of its last frames (reflect padding, receptive field). So every segment is
encoded **at its exact length**, and the set of shapes stays small instead: segment lengths take
at most ``S / Q`` values (30 for the defaults; almost all segments are exactly ``S`` long), and
segments of equal length are batched together across files, the batch dimension padded with
zero rows to a power of two <= ``batch_size`` (rows do not interact, so padding rows never change
the real rows' codes). Each ``(batch, channels, length)`` shape compiles once
(:meth:`Encodec.encode` is jitted). Codes therefore equal ``codec.encode`` of the segment alone
(tested bit-exactly).

Report, resume, Beam
--------------------
* The report (``{"kept": [{"path", "segments", "seconds"}], "skipped": [{"path", "reason"}],
  "summary": {...}}``, entries in input order) is written to ``--report`` (default
  ``DATA_DIR/tokenize_report.json``) and also stored inside the dataset folder
  (``DATA_DIR/NAME/VERSION/tokenize_report.json``) after TFDS has finalised it.
* Resuming: TFDS writes into ``NAME/incomplete.XXXXXX_VERSION`` and renames it only at the end,
  so a crashed build leaves no half dataset; re-running simply redoes the build (stale incomplete
  folders of killed runs are removed first). Re-running after success with the same ``data_dir``,
  name and version is a no-op that re-emits the stored report (after checking the codec is the
  same; the corpus is *not* compared: a changed corpus needs ``overwrite=True`` or another name);
  ``overwrite=True`` rebuilds. Finer-grained resumption (skipping files done before a crash) is
  deliberately not attempted: for corpora where a redo is too costly, use Beam, whose runners
  retry failed work items instead of failing the job.
* Beam (:mod:`magnet_jax.data.tokenize_beam`): the same builder, with ``beam_options``; the
  driver writes the input list as JSON-lines shards into ``DATA_DIR/_tokenize_work/``, workers
  tokenize whole files and write one report record per input (a side output, JSON-lines shards)
  that the driver merges after the pipeline, then deletes the work folder.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import gzip
import hashlib
import json
import logging
import math
import os
import posixpath
import re
import shutil
import time
from typing import Any, Iterator, Mapping

import numpy as np

from . import audio_io
from .audio_io import AudioError, LevelOptions

log = logging.getLogger(__name__)

DEFAULT_NAME = "magnet_codes"
VERSION = "1.0.0"
_VERSION_STR = VERSION
REPORT_FILENAME = "tokenize_report.json"
TEXT_FIELDS = ("description", "title", "genre", "moods", "keywords", "key")
UNSUPPORTED_EXTENSION, MALFORMED_LINE, DUPLICATE, ERROR = (
    "unsupported_extension", "malformed_manifest_line", "duplicate", "error")


class CodecMismatchError(ValueError):
    """A dataset was tokenized with another codec than the one a model / pipeline expects."""


# --------------------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True)
class TokenizeOptions:
    """Segmenting, loudness and batching knobs (see the module docstring for the policies)."""
    segment_seconds: float = 30.0
    min_seconds: float = 1.0
    length_quantum_seconds: float = 1.0
    level: LevelOptions = LevelOptions()
    resample_quality: str = "HQ"
    batch_size: int = 8
    read_workers: int = 2          # threads decoding / resampling ahead of the encoder
    max_pending_segments: int = 64  # bound on segments waiting for a full batch (memory)

    def __post_init__(self):
        if self.segment_seconds <= 0:
            raise ValueError("segment_seconds must be > 0")
        if not 0 < self.length_quantum_seconds <= self.segment_seconds:
            raise ValueError("length_quantum_seconds must be in (0, segment_seconds]")
        if not 0 <= self.min_seconds <= self.segment_seconds:
            raise ValueError("min_seconds must be in [0, segment_seconds]")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- corpus
@dataclasses.dataclass(frozen=True)
class CorpusItem:
    """One input: its path as resolved from the manifest / folder, metadata, or a known problem."""
    index: int
    path: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None       # a skip reason known before reading (malformed line, duplicate...)


def item_to_json(item: CorpusItem) -> dict:
    return {"index": item.index, "path": item.path, "metadata": dict(item.metadata), "error": item.error}


def item_from_json(d: Mapping) -> CorpusItem:
    return CorpusItem(int(d["index"]), d["path"], dict(d.get("metadata") or {}), d.get("error"))


def _exists(path: str) -> bool:
    if "://" in path:
        from etils import epath
        return epath.Path(path).exists()
    return os.path.exists(path)


def _read_json_file(path: str) -> dict | None:
    """A JSON object from a local or remote (``gs://``..., through etils.epath) file, else None."""
    try:
        if "://" in path:
            from etils import epath
            obj = json.loads(epath.Path(path).read_text())
        else:
            with open(path, encoding="utf-8") as fh:
                obj = json.load(fh)
        return obj if isinstance(obj, dict) else None
    except Exception:  # noqa: BLE001 - missing, unreadable or not JSON: all mean "no usable file"
        return None


def sidecar_path(audio_path: str) -> str:
    """``song.flac`` -> ``song.json`` (audiocraft's convention)."""
    return os.path.splitext(audio_path)[0] + ".json"


def _clean_meta(raw: Mapping[str, Any]) -> dict:
    out = {}
    for k in TEXT_FIELDS:
        v = raw.get(k)
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            v = ", ".join(str(x).strip() for x in v if x is not None and str(x).strip())
        v = str(v).strip()
        if v:
            out[k] = v
    bpm = raw.get("bpm")
    if bpm not in (None, ""):
        try:
            b = float(bpm)
            if math.isfinite(b) and b > 0:
                out["bpm"] = b
        except (TypeError, ValueError):
            pass
    return out


def item_metadata(path: str, line: Mapping[str, Any] | None = None) -> dict:
    """Metadata of one input: sidecar JSON, overridden by non-empty manifest-line fields.

    Sidecars are looked up for local paths only; for remote (``gs://``...) corpora put the
    metadata into the manifest lines (checking a million remote sidecars from the driver is slow).
    """
    meta = {}
    if "://" not in path and os.path.isfile(sidecar_path(path)):
        side = _read_json_file(sidecar_path(path))
        if side:
            meta.update(_clean_meta(side))
    if line:
        meta.update(_clean_meta(line))
    return meta


def list_manifest(manifest: str | os.PathLike) -> list[CorpusItem]:
    """Inputs of an audiocraft manifest (``.jsonl`` / ``.jsonl.gz``), one per non-blank line.

    Relative paths resolve against the manifest's (absolute) folder; absolute paths are kept as
    written. The manifest and audio may be remote (``gs://``...: read through etils.epath /
    Beam filesystems). A line that is not a JSON object with a string ``path`` becomes a skipped input named
    ``<manifest>:<line number>``; a path listed twice is skipped as ``duplicate`` the second time.
    """
    manifest = os.fspath(manifest)
    remote = "://" in manifest
    base = manifest.rsplit("/", 1)[0] if remote else os.path.dirname(os.path.abspath(manifest))
    if remote:  # gs://... through etils.epath (as TFDS does)
        from etils import epath
        data = epath.Path(manifest).read_bytes()
        text = (gzip.decompress(data) if manifest.endswith(".gz") else data).decode("utf-8")
    else:
        with (gzip.open if manifest.endswith(".gz") else open)(manifest, "rt", encoding="utf-8") as fh:
            text = fh.read()
    items: list[CorpusItem] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit in strings
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            p = line["path"]
            if not isinstance(p, str) or not p:
                raise TypeError("'path' is not a non-empty string")
        except (ValueError, KeyError, TypeError) as e:
            items.append(CorpusItem(len(items), f"{manifest}:{lineno}",
                                    error=f"{MALFORMED_LINE}: {type(e).__name__}: {e}"))
            continue
        if os.path.isabs(p) or "://" in p:
            path = p
        elif remote:
            scheme, rest = base.split("://", 1)
            path = f"{scheme}://{posixpath.normpath(rest + '/' + p)}"
        else:
            path = os.path.normpath(os.path.join(base, p))
        if path in seen:
            items.append(CorpusItem(len(items), path,
                                    error=f"{DUPLICATE}: same path as manifest input #{seen[path]}"))
            continue
        seen[path] = len(items)
        items.append(CorpusItem(len(items), path, item_metadata(path, line)))
    return items


def list_audio_dir(audio_dir: str | os.PathLike) -> list[CorpusItem]:
    """Inputs of a folder: every non-hidden file below it (sorted) except ``.json`` sidecars."""
    root = os.path.abspath(os.fspath(audio_dir))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"audio folder {root!r} does not exist")
    paths = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for f in files:
            if not f.startswith(".") and not f.lower().endswith(".json"):
                paths.append(os.path.join(d, f))
    items = []
    for i, p in enumerate(sorted(paths)):
        if not p.lower().endswith(audio_io.AUDIO_EXTENSIONS):
            items.append(CorpusItem(i, p, error=f"{UNSUPPORTED_EXTENSION}: {os.path.splitext(p)[1] or '(none)'}"))
        else:
            items.append(CorpusItem(i, p, item_metadata(p)))
    return items


# --------------------------------------------------------------------------- codec info
def codec_fingerprint(codec) -> str:
    """SHA-256 (16 hex digits) of the codec's architecture and every parameter's float32 bytes."""
    import jax
    from flax import nnx
    h = hashlib.sha256(repr(codec.config.replace(name="", num_codebooks=1)).encode())
    leaves = jax.tree_util.tree_leaves_with_path(nnx.state(codec.net))
    for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]


def codec_info(codec, path: str | None = None) -> dict:
    """What a dataset records about its codec (``DatasetInfo.metadata["codec"]``)."""
    return dict(name=codec.config.name, path=str(path) if path is not None else "",
                sample_rate=int(codec.sample_rate), frame_rate=float(codec.frame_rate),
                hop_length=int(codec.hop_length), num_codebooks=int(codec.num_codebooks),
                cardinality=int(codec.cardinality), channels=int(codec.channels),
                renormalize=bool(codec.config.renormalize), fingerprint=codec_fingerprint(codec))


def find_dataset_dirs(root: str) -> list[str]:
    """Finished TFDS dataset folders (holding ``dataset_info.json``) at or up to 3 levels below
    ``root``; in-progress / crashed ``incomplete.*`` builds are skipped."""
    if _exists(os.path.join(root, "dataset_info.json")):
        return [root]
    if "://" in root:
        return []
    found = []
    for depth_glob in ("*", os.path.join("*", "*"), os.path.join("*", "*", "*")):
        import glob
        found = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(root, depth_glob, "dataset_info.json"))
                       if "incomplete." not in p)
        if found:
            return found
    return found


def read_codec_info(path_or_builder) -> dict:
    """The codec record of a tokenized dataset.

    Accepts a TFDS builder (``tfds.builder_from_directory(...)``), a dataset folder
    (``OUT/NAME/VERSION``), or a parent of exactly one dataset (``OUT/NAME`` or ``OUT``).
    """
    if hasattr(path_or_builder, "info") and hasattr(path_or_builder, "data_dir"):
        md = path_or_builder.info.metadata
        if md and "codec" in md:
            return dict(md["codec"])
        path_or_builder = os.fspath(path_or_builder.data_dir)
    root = os.fspath(path_or_builder)
    dirs = find_dataset_dirs(root)
    if not dirs:
        raise FileNotFoundError(f"no TFDS dataset (dataset_info.json) found in {root!r}")
    if len(dirs) > 1:
        raise ValueError(f"{root!r} holds several datasets {dirs}; pass one of them")
    md = _read_json_file(os.path.join(dirs[0], "metadata.json")) or {}
    if "codec" not in md:
        raise ValueError(f"{dirs[0]!r} was not written by magnet_jax.data.tokenize (no codec in metadata.json)")
    return dict(md["codec"])


def _get(obj, key, default=None):
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _names_match(a: str, b: str) -> bool:
    norm = lambda s: os.path.basename(os.path.normpath(str(s))).lower()  # noqa: E731
    return str(a) == str(b) or norm(a) == norm(b)


def check_codec_compatible(info, target) -> None:
    """Raise :class:`CodecMismatchError` unless the dataset's codec is the one ``target`` expects.

    ``info``: a codec record (:func:`read_codec_info`) or anything :func:`read_codec_info`
    accepts. ``target``:

    * an :class:`~magnet_jax.codec.Encodec`: sample rate, channels, frame rate, codebooks,
      cardinality **and the weight fingerprint** must match (the strongest check);
    * a ``MagnetConfig`` (``n_q``, ``card``, ``frame_rate``);
    * a full experiment config (``magnet_jax.configs.get_config``): its ``model`` section as above
      plus ``codec.sample_rate`` / ``codec.channels`` and ``codec.name``, which must equal the
      dataset codec's name or path, or share its last path component (so a local download
      ``/models/encodec_32khz`` matches ``facebook/encodec_32khz``);
    * a mapping with any of the codec-record keys.
    """
    if not isinstance(info, Mapping):
        info = read_codec_info(info)
    want: dict[str, Any] = {}
    name = None
    if hasattr(target, "net") and hasattr(target, "encode") and hasattr(target, "config"):
        want = dict(sample_rate=target.sample_rate, channels=target.channels, frame_rate=target.frame_rate,
                    num_codebooks=target.num_codebooks, cardinality=target.cardinality,
                    fingerprint=codec_fingerprint(target))
    elif _get(target, "model") is not None and _get(target, "codec") is not None:
        m, c = _get(target, "model"), _get(target, "codec")
        want = dict(num_codebooks=_get(m, "n_q"), cardinality=_get(m, "card"), frame_rate=_get(m, "frame_rate"),
                    sample_rate=_get(c, "sample_rate"), channels=_get(c, "channels"))
        name = _get(c, "name") or None
    elif _get(target, "n_q") is not None and _get(target, "card") is not None:
        want = dict(num_codebooks=_get(target, "n_q"), cardinality=_get(target, "card"),
                    frame_rate=_get(target, "frame_rate"))
    elif isinstance(target, Mapping):
        want = {k: target[k] for k in ("sample_rate", "channels", "frame_rate", "num_codebooks", "cardinality",
                                       "fingerprint") if k in target}
    else:
        raise TypeError(f"cannot check a codec against {type(target).__name__}")
    problems = []
    for k, v in want.items():
        if v is None or k not in info:
            continue
        have = info[k]
        same = (abs(float(have) - float(v)) < 1e-6 * max(1.0, abs(float(v)))) if k == "frame_rate" else have == v
        if not same:
            problems.append(f"{k}: dataset {have!r} vs expected {v!r}")
    if name and not (_names_match(name, info.get("name", "")) or _names_match(name, info.get("path", ""))):
        problems.append(f"codec name: dataset {info.get('path') or info.get('name')!r} vs expected {name!r}")
    if problems:
        raise CodecMismatchError(
            "the dataset was tokenized with a different codec (" + "; ".join(problems) + "). Re-tokenize the "
            "corpus with the model's codec (tools/tokenize_dataset.py --codec=...).")


# --------------------------------------------------------------------------- segments
@dataclasses.dataclass
class PreparedFile:
    """A decoded, converted file and its segments ``[(offset_samples, wav [C, L])]``."""
    item: CorpusItem
    source_sample_rate: int
    segments: list[tuple[int, np.ndarray]]
    dropped_silent: int = 0


def plan_segments(num_samples: int, sample_rate: int, hop: int, opts: TokenizeOptions) -> list[tuple[int, int]]:
    """``[(offset, length)]`` in samples following the segmenting policy (module docstring)."""
    seg = hop * max(1, round(opts.segment_seconds * sample_rate / hop))
    quantum = hop * max(1, round(opts.length_quantum_seconds * sample_rate / hop))
    min_len = max(1, int(math.ceil(opts.min_seconds * sample_rate)))
    if num_samples < min_len:
        return []
    full = num_samples // seg
    out = [(i * seg, seg) for i in range(full)]
    rem = ((num_samples - full * seg) // quantum) * quantum
    if rem > 0 and rem >= min_len:
        out.append((full * seg, rem))
    return out


def prepare_file(item: CorpusItem, sample_rate: int, channels: int, hop: int,
                 opts: TokenizeOptions) -> PreparedFile:
    """Read + convert + segment one input; raises :class:`AudioError` for a file to skip."""
    if item.error:
        tag, _, msg = item.error.partition(": ")
        raise AudioError(tag, msg)
    wav, src_sr, _ = audio_io.load_audio(item.path, sample_rate, channels, level=opts.level,
                                         quality=opts.resample_quality)
    plan = plan_segments(wav.shape[1], sample_rate, hop, opts)
    if not plan:
        raise AudioError(audio_io.TOO_SHORT,
                         f"{wav.shape[1] / sample_rate:.3f} s is shorter than min_seconds={opts.min_seconds:g} "
                         f"(after rounding down to multiples of {opts.length_quantum_seconds:g} s)")
    segs, dropped = [], 0
    thr = opts.level.silence_db
    for off, length in plan:
        x = np.ascontiguousarray(wav[:, off:off + length])
        if thr is not None and audio_io.rms_db(x) < thr:
            dropped += 1
            continue
        segs.append((off, x))
    if not segs:
        raise AudioError(audio_io.SILENT, f"all {len(plan)} segments are below {thr:g} dBFS")
    return PreparedFile(item, src_sr, segs, dropped)


def safe_prepare(item, sample_rate, channels, hop, opts) -> PreparedFile | AudioError:
    """:func:`prepare_file` that returns (never raises) the error, unexpected ones included."""
    try:
        return prepare_file(item, sample_rate, channels, hop, opts)
    except AudioError as e:
        return e
    except MemoryError:
        return AudioError(ERROR, "out of memory while decoding (file too long?)")
    except Exception as e:  # never let one file stop the job
        return AudioError(ERROR, f"{type(e).__name__}: {e}")


# --------------------------------------------------------------------------- encoding
def _batch_bucket(n: int, batch_size: int) -> int:
    b = 1
    while b < n:
        b *= 2
    return min(b, batch_size) if n <= batch_size else n


class SegmentEncoder:
    """Encodes segments in batches of equal length with a small set of static shapes.

    :meth:`add` queues a segment ``[C, L]`` with an opaque ``tag`` and returns the
    ``[(tag, codes int16 [K, T])]`` completed by it (a full batch); :meth:`flush` encodes what is
    left. Batches are padded with zero rows to a power of two <= ``batch_size``.
    """

    def __init__(self, codec, batch_size: int = 8, max_pending: int = 64):
        if codec.cardinality > np.iinfo(np.int16).max + 1:
            raise ValueError(f"codebook size {codec.cardinality} does not fit int16 codes")
        self.codec = codec
        self.batch_size = batch_size
        self.max_pending = max(batch_size, max_pending)
        self.queues: dict[int, list] = collections.defaultdict(list)
        self.pending = 0
        self.shapes: set[tuple[int, ...]] = set()

    def encode_batch(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        n = len(wavs)
        c, length = wavs[0].shape
        x = np.zeros((_batch_bucket(n, self.batch_size), c, length), np.float32)
        for i, w in enumerate(wavs):
            x[i] = w
        self.shapes.add(x.shape)
        codes = np.asarray(self.codec.encode(x))[:n]
        return [cd.astype(np.int16) for cd in codes]

    def _run(self, length: int) -> list:
        q = self.queues.pop(length)
        self.pending -= len(q)
        codes = self.encode_batch([w for _, w in q])
        return [(tag, cd) for (tag, _), cd in zip(q, codes)]

    def add(self, wav: np.ndarray, tag) -> list:
        length = wav.shape[1]
        self.queues[length].append((tag, wav))
        self.pending += 1
        done = []
        if len(self.queues[length]) >= self.batch_size:
            done += self._run(length)
        while self.pending > self.max_pending:
            done += self._run(max(self.queues, key=lambda k: len(self.queues[k])))
        return done

    def flush(self) -> list:
        done = []
        for length in sorted(self.queues):
            done += self._run(length)
        return done


def make_example(prep: PreparedFile, offset: int, codes: np.ndarray, sample_rate: int, hop: int) -> tuple[str, dict]:
    """(key, feature dict) for one encoded segment."""
    item, meta = prep.item, prep.item.metadata
    t = int(codes.shape[1])
    ex = {k: meta.get(k, "") for k in TEXT_FIELDS}
    ex.update(codes=codes.astype(np.int16), num_frames=t, bpm=np.float32(meta.get("bpm", float("nan"))),
              path=item.path, offset_seconds=np.float32(offset / sample_rate), offset_frames=offset // hop,
              duration_seconds=np.float32(t * hop / sample_rate), sample_rate=prep.source_sample_rate)
    return f"{item.path}#{offset // hop}", ex


def kept_entry(prep: PreparedFile, sample_rate: int) -> dict:
    e = {"path": prep.item.path, "segments": len(prep.segments),
         "seconds": round(sum(w.shape[1] for _, w in prep.segments) / sample_rate, 3)}
    if prep.dropped_silent:
        e["dropped_silent_segments"] = prep.dropped_silent
    return e


def encode_file(codec, prep: PreparedFile, batch_size: int) -> Iterator[tuple[str, dict]]:
    """All examples of one file (segments of equal length batched together); used by Beam."""
    enc = SegmentEncoder(codec, batch_size, max_pending=1 << 30)
    done = []
    for off, w in prep.segments:
        done += enc.add(w, off)
    done += enc.flush()
    for off, cd in sorted(done, key=lambda x: x[0]):
        yield make_example(prep, off, cd, codec.sample_rate, codec.hop_length)


def _prefetch(fn, items: list, workers: int) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(item))`` in input order, computed by ``workers`` threads ahead of the consumer."""
    if workers <= 0:
        for it in items:
            yield it, fn(it)
        return
    with cf.ThreadPoolExecutor(workers) as ex:
        q: collections.deque = collections.deque()
        pos = 0
        while pos < len(items) or q:
            while pos < len(items) and len(q) < 2 * workers:
                q.append((items[pos], ex.submit(fn, items[pos])))
                pos += 1
            it, fut = q.popleft()
            yield it, fut.result()


# --------------------------------------------------------------------------- report
class Report:
    """Kept / skipped records, one per input."""

    def __init__(self):
        self.kept: list[tuple[int, dict]] = []
        self.skipped: list[tuple[int, dict]] = []

    def keep(self, index: int, entry: dict):
        self.kept.append((index, entry))

    def skip(self, index: int, path: str, reason: str):
        self.skipped.append((index, {"path": path, "reason": reason}))

    def to_json(self, summary: dict | None = None) -> dict:
        out = {"kept": [e for _, e in sorted(self.kept, key=lambda x: x[0])],
               "skipped": [e for _, e in sorted(self.skipped, key=lambda x: x[0])]}
        out["summary"] = {**summarize(out), **(summary or {})}
        return out


def summarize(report: Mapping) -> dict:
    kept, skipped = report["kept"], report["skipped"]
    reasons = collections.Counter(e["reason"].split(":")[0] for e in skipped)
    return dict(inputs=len(kept) + len(skipped), kept=len(kept), skipped=len(skipped),
                segments=sum(e["segments"] for e in kept),
                hours=round(sum(e.get("seconds", 0.0) for e in kept) / 3600, 6),
                skip_reasons=dict(sorted(reasons.items())))


def write_json(path: str, obj) -> None:
    """Write JSON atomically (local paths) or through etils.epath, as TFDS does (``gs://`` ...)."""
    data = json.dumps(obj, indent=1, ensure_ascii=False)
    if "://" in path:
        from etils import epath
        epath.Path(path).write_text(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- TFDS builder
def _tfds():
    import tensorflow_datasets as tfds
    return tfds


def features(num_codebooks: int):
    """The dataset's :class:`tfds.features.FeaturesDict` (no TensorFlow needed)."""
    tfds = _tfds()
    f = {"codes": tfds.features.Tensor(shape=(num_codebooks, None), dtype=np.int16), "num_frames": np.int32}
    f.update({k: tfds.features.Text() for k in TEXT_FIELDS})
    f.update(bpm=np.float32, path=tfds.features.Text(), offset_seconds=np.float32, offset_frames=np.int32,
             duration_seconds=np.float32, sample_rate=np.int32)
    return tfds.features.FeaturesDict(f)


_BUILDER_CLASSES: dict[str, type] = {}


def builder_class(name: str = DEFAULT_NAME):
    """The builder class for dataset ``name`` (created once per name, not registered in TFDS's
    registry: read the data back with ``tfds.data_source(name, data_dir=...)`` or
    ``tfds.builder_from_directory``, which need no builder code)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"dataset name {name!r} must be snake_case ([a-z][a-z0-9_]*)")
    if name not in _BUILDER_CLASSES:
        tfds = _tfds()

        class AudioCodes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
            __doc__ = _BUILDER_DOC
            VERSION = tfds.core.Version(_VERSION_STR)
            RELEASE_NOTES = {_VERSION_STR: "EnCodec codes of an audio corpus (magnet_jax.data.tokenize)."}
            # No dataset package folder (checksums, README): also avoids TFDS's optional
            # importlib_resources lookup for builders defined inside a package.
            code_path = None

            def __init__(self, *, corpus: list[CorpusItem] = (), codec=None, codec_path: str | None = None,
                         options: TokenizeOptions = TokenizeOptions(), beam: bool = False,
                         beam_work_dir: str | None = None, progress: bool = False, source: str = "",
                         _codec_info: dict | None = None, **kwargs):
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
                self.encoder_shapes: set = set()
                kwargs.setdefault("file_format", "array_record")
                super().__init__(**kwargs)

            def _info(self):
                ci = self._codec_info
                if ci is None:
                    raise ValueError("building needs a codec")
                md = tfds.core.MetadataDict(codec=dict(ci), tokenizer=dict(
                    options=self._options.to_json(), source=self._source, version=VERSION,
                    policies="see magnet_jax.data.tokenize module docstring"))
                return tfds.core.DatasetInfo(
                    builder=self, description=(f"EnCodec codes ({ci['num_codebooks']} x {ci['cardinality']}, "
                                               f"{ci['frame_rate']:g} Hz) of an audio corpus."),
                    features=features(ci["num_codebooks"]), metadata=md)

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples()}

            def _generate_examples(self):
                if self._beam:
                    from .tokenize_beam import TokenizeFiles
                    return TokenizeFiles(_write_input_shards(self._corpus, self._beam_work_dir), self._codec_path,
                                         self._codec_info, self._options, _report_prefix(self._beam_work_dir))
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

                for item, res in _prefetch(fn, self._corpus, opts.read_workers):
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
                self.encoder_shapes = enc.shapes
                if bar is not None:
                    bar.close()

        AudioCodes.name = name
        AudioCodes.__name__ = AudioCodes.__qualname__ = "".join(p.title() for p in name.split("_"))
        _BUILDER_CLASSES[name] = AudioCodes
    return _BUILDER_CLASSES[name]


_BUILDER_DOC = """EnCodec codes of an audio corpus; features: codes int16 [K, T], num_frames, description,
title, genre, moods, keywords, key, bpm (NaN if unknown), path, offset_seconds, offset_frames,
duration_seconds, sample_rate (of the source file). Codec in ``info.metadata['codec']``."""


# --------------------------------------------------------------------------- driver
@dataclasses.dataclass
class TokenizeResult:
    report: dict
    dataset_dir: str
    report_path: str
    reused: bool
    seconds: float


def _clean_stale_incomplete(data_dir: str, name: str, version: str) -> None:
    parent = os.path.join(data_dir, name)
    if "://" in data_dir or not os.path.isdir(parent):
        return
    for d in os.listdir(parent):
        if d.startswith("incomplete.") and d.endswith("_" + version):
            log.warning("removing the incomplete build of an earlier, interrupted run: %s", os.path.join(parent, d))
            shutil.rmtree(os.path.join(parent, d), ignore_errors=True)


BEAM_INPUTS_PER_SHARD = 1000


def _write_text(path: str, text: str) -> None:
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems
        with FileSystems.create(path) as fh:
            fh.write(text.encode())
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_input_shards(corpus: list[CorpusItem], work_dir: str) -> list[str]:
    """The inputs as JSON-lines shards of :data:`BEAM_INPUTS_PER_SHARD` items next to the output,
    so the pipeline graph only carries shard paths (a Dataflow job graph must stay small) and
    workers read their inputs themselves."""
    paths = []
    for k in range(0, max(1, len(corpus)), BEAM_INPUTS_PER_SHARD):
        p = os.path.join(work_dir, "inputs", f"inputs-{k // BEAM_INPUTS_PER_SHARD:05d}.jsonl")
        _write_text(p, "".join(json.dumps(item_to_json(it), ensure_ascii=False) + "\n"
                               for it in corpus[k:k + BEAM_INPUTS_PER_SHARD]))
        paths.append(p)
    return paths


def _report_prefix(work_dir: str) -> str:
    return os.path.join(work_dir, "report", "part")


def _merge_report_parts(prefix: str, corpus: list[CorpusItem]) -> Report:
    from apache_beam.io.filesystems import FileSystems
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
    missing = [it for it in corpus if it.index not in seen]
    for it in missing:  # should not happen; keeps the report exhaustive if it does
        rep.skip(it.index, it.path, f"{ERROR}: no result recorded by the pipeline")
    return rep


def tokenize_corpus(*, codec, data_dir: str, manifest: str | None = None, audio_dir: str | None = None,
                    name: str = DEFAULT_NAME, report_path: str | None = None,
                    options: TokenizeOptions = TokenizeOptions(), beam_options=None, overwrite: bool = False,
                    progress: bool = False, codec_path: str | None = None) -> TokenizeResult:
    """Tokenize a corpus into the TFDS dataset ``data_dir/name/VERSION`` and write the report.

    ``codec``: a hub id or local path (see :func:`magnet_jax.codec.load_encodec`), or a loaded
    ``Encodec`` together with ``codec_path``, where it was loaded from (recorded in the dataset,
    and what Beam workers load). ``beam_options``: a list of
    Beam pipeline arguments or ``PipelineOptions``; when given, the build runs as a Beam pipeline.
    """
    t0 = time.perf_counter()
    if (manifest is None) == (audio_dir is None):
        raise ValueError("give exactly one of manifest= or audio_dir=")
    if isinstance(codec, (str, os.PathLike)):
        from ..codec import load_encodec
        codec_path = os.fspath(codec)
        codec = load_encodec(codec_path)
    if beam_options is not None and not codec_path:
        raise ValueError("Beam workers load the codec themselves: pass codec as a hub id or path")
    data_dir = os.fspath(data_dir)
    report_path = report_path or os.path.join(data_dir, REPORT_FILENAME)
    corpus = list_manifest(manifest) if manifest is not None else list_audio_dir(audio_dir)
    source = os.path.abspath(manifest) if manifest is not None else os.path.abspath(audio_dir)
    cls = builder_class(name)
    info = codec_info(codec, codec_path)
    work_dir = None
    if beam_options is not None:
        import uuid
        work_dir = os.path.join(data_dir, "_tokenize_work", f"{name}-{VERSION}-{uuid.uuid4().hex[:8]}")
    builder = cls(data_dir=data_dir, corpus=corpus, codec=codec, codec_path=codec_path, options=options,
                  beam=beam_options is not None, beam_work_dir=work_dir, progress=progress, source=source,
                  _codec_info=info)
    dataset_dir = os.fspath(builder.data_dir)
    tfds = _tfds()
    if _exists(os.path.join(dataset_dir, "dataset_info.json")) and not overwrite:
        try:
            check_codec_compatible(read_codec_info(dataset_dir), info)
        except CodecMismatchError as e:
            raise CodecMismatchError(f"{dataset_dir} exists and {e} Use overwrite=True (--overwrite) or another "
                                     f"name.") from None
        stored = _read_json_file(os.path.join(dataset_dir, REPORT_FILENAME))
        if stored is None:
            raise FileNotFoundError(f"{dataset_dir} exists but has no {REPORT_FILENAME}; rebuild with overwrite")
        stored.setdefault("summary", {}).update(reused=True)
        if os.path.abspath(report_path) != os.path.abspath(os.path.join(dataset_dir, REPORT_FILENAME)):
            write_json(report_path, stored)
        return TokenizeResult(stored, dataset_dir, report_path, True, time.perf_counter() - t0)
    _clean_stale_incomplete(data_dir, name, VERSION)
    if beam_options is not None:
        from . import tokenize_beam
        tokenize_beam.register_codec(codec_path, codec)  # in-process runners reuse the loaded codec
        if isinstance(beam_options, (list, tuple)):
            from apache_beam.options.pipeline_options import PipelineOptions
            beam_options = PipelineOptions(list(beam_options))
    gm = tfds.download.GenerateMode
    mode = gm.FORCE_REDOWNLOAD if overwrite else gm.REUSE_DATASET_IF_EXISTS
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        download_mode=mode, beam_options=beam_options))
    if beam_options is not None:
        report = _merge_report_parts(_report_prefix(work_dir), corpus)
        from apache_beam.io.filesystems import FileSystems
        try:
            FileSystems.delete([work_dir])
            if "://" not in work_dir:
                os.rmdir(os.path.dirname(work_dir))  # only if no other build is using it
        except Exception:  # noqa: BLE001 - leftovers are harmless
            pass
    else:
        report = builder.report
    out = report.to_json(dict(dataset_dir=dataset_dir, codec=info["path"] or info["name"], reused=False,
                              wall_seconds=round(time.perf_counter() - t0, 2)))
    write_json(os.path.join(dataset_dir, REPORT_FILENAME), out)
    write_json(report_path, out)
    return TokenizeResult(out, dataset_dir, report_path, False, time.perf_counter() - t0)


def format_summary(result: TokenizeResult) -> str:
    s = result.report["summary"]
    lines = [f"{'reused existing dataset' if result.reused else 'tokenized'}: {s['kept']} kept / {s['skipped']} "
             f"skipped of {s['inputs']} inputs, {s['segments']} segments, {s['hours'] * 3600:.1f} s "
             f"({s['hours']:.3f} h) of audio",
             f"dataset: {result.dataset_dir}", f"report:  {result.report_path}"]
    if s.get("skip_reasons"):
        lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in s["skip_reasons"].items()))
    return "\n".join(lines)
