"""Corpus listing: an audiocraft manifest or an audio folder -> :class:`CorpusItem` list, with metadata.

* a **manifest** (``.jsonl`` / ``.jsonl.gz``): one JSON object per line with ``path`` (relative paths
  resolve against the manifest's folder), ``duration`` and ``sample_rate`` (informational: the file
  itself is authoritative), optional ``description`` and any of the metadata fields below;
* an **audio folder**: every regular, non-hidden file below it (sorted), except ``.json`` sidecars;
  files without an audio extension are reported as skipped (``unsupported_extension``).

Metadata: a sidecar ``<audio path without extension>.json`` may hold :data:`TEXT_FIELDS` (lists are
joined with ", ") and ``bpm``. Non-empty manifest-line fields take precedence over the sidecar. A
malformed sidecar is ignored (the clip is kept without its metadata): metadata never costs audio.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import posixpath
from typing import Any, Mapping

from magnet_jax.data import audio_io
from magnet_jax.data.tokenize._paths import is_remote, read_json_file
from magnet_jax.util.user_input import UserError

TEXT_FIELDS = ("description", "title", "genre", "moods", "keywords", "key", "instrument")
UNSUPPORTED_EXTENSION, MALFORMED_LINE, DUPLICATE, ERROR = (
    "unsupported_extension", "malformed_manifest_line", "duplicate", "error")


class CorpusError(UserError):
    """A corpus that cannot be listed at all (missing or empty manifest / folder)."""


class NoUsableInputError(CorpusError):
    """Every input was skipped (the report, written anyway, says why)."""


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


def sidecar_path(audio_path: str) -> str:
    """``song.flac`` -> ``song.json`` (audiocraft's convention)."""
    return os.path.splitext(audio_path)[0] + ".json"


def clean_metadata(raw: Mapping[str, Any]) -> dict:
    """The :data:`TEXT_FIELDS` (non-empty strings; lists joined with ", ") and a finite positive ``bpm``."""
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
    if not is_remote(path) and os.path.isfile(sidecar_path(path)):
        side = read_json_file(sidecar_path(path))
        if side:
            meta.update(clean_metadata(side))
    if line:
        meta.update(clean_metadata(line))
    return meta


def _read_manifest_bytes(manifest: str) -> bytes:
    if is_remote(manifest):  # gs://... through etils.epath (as TFDS does)
        from etils import epath
        data = epath.Path(manifest).read_bytes()
    elif not os.path.isfile(manifest):
        raise CorpusError(f"manifest {manifest!r} does not exist: pass an audiocraft .jsonl(.gz) manifest")
    else:
        with open(manifest, "rb") as fh:
            data = fh.read()
    return gzip.decompress(data) if manifest.endswith(".gz") else data


def _normpath(p: str) -> str:
    """``/x/./a.wav``, ``/x//a.wav`` and ``/x/y/../a.wav`` -> ``/x/a.wav`` (so duplicates are found)."""
    if "://" in p:
        scheme, rest = p.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    return os.path.normpath(p)


def list_manifest(manifest: str | os.PathLike) -> list[CorpusItem]:
    """Inputs of an audiocraft manifest (``.jsonl`` / ``.jsonl.gz``), one per non-blank line.

    Relative paths resolve against the manifest's (absolute) folder; absolute paths are kept as
    written. A line that is not a JSON object with a string ``path`` becomes a skipped input named
    ``<manifest>:<line number>``; a path listed twice is skipped as ``duplicate`` the second time.
    """
    manifest = os.fspath(manifest)
    remote = is_remote(manifest)
    base = manifest.rsplit("/", 1)[0] if remote else os.path.dirname(os.path.abspath(manifest))
    data = _read_manifest_bytes(manifest)
    items: list[CorpusItem] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(data.split(b"\n"), 1):  # not splitlines(): U+2028 may sit in strings
        if not raw.strip():
            continue
        try:
            line = json.loads(raw.decode("utf-8"))  # one undecodable line is one skipped input
            p = line["path"]
            if not isinstance(p, str) or not p:
                raise TypeError("'path' is not a non-empty string")
        except (ValueError, KeyError, TypeError) as e:  # UnicodeDecodeError is a ValueError
            items.append(CorpusItem(len(items), f"{manifest}:{lineno}",
                                    error=f"{MALFORMED_LINE}: {type(e).__name__}: {e}"))
            continue
        if os.path.isabs(p) or "://" in p:
            path = _normpath(p)
        else:
            path = _normpath(f"{base}/{p}" if remote else os.path.join(base, p))
        if path in seen:
            items.append(CorpusItem(len(items), path,
                                    error=f"{DUPLICATE}: same path as manifest input #{seen[path]}"))
            continue
        seen[path] = len(items)
        items.append(CorpusItem(len(items), path, item_metadata(path, line)))
    if not items:
        raise CorpusError(f"manifest {manifest!r} lists no inputs (no non-blank line): give one JSON object with a "
                          f"'path' per line")
    return items


def list_audio_dir(audio_dir: str | os.PathLike) -> list[CorpusItem]:
    """Inputs of a folder: every non-hidden file below it (sorted) except ``.json`` sidecars."""
    root = os.path.abspath(os.fspath(audio_dir))
    if not os.path.isdir(root):
        raise CorpusError(f"audio folder {root!r} does not exist: pass an existing --audio_dir")
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
    if not items:
        raise CorpusError(f"audio folder {root!r} holds no files: put audio files (with optional .json sidecars) in it")
    return items
