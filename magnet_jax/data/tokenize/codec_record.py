"""The codec record of a tokenized dataset: what codec made the codes, and the check that refuses another.

Stored as ``DatasetInfo.metadata["codec"]`` (``metadata.json`` in the dataset folder); training and the
input pipeline need only this module (no TFDS builder, no encoder).
"""
from __future__ import annotations

import glob
import hashlib
import os
from typing import Any, Mapping

import numpy as np

from magnet_jax.data.tokenize._paths import exists, is_remote, read_json_file
from magnet_jax.util.user_input import UserError


class CodecMismatchError(UserError):
    """A dataset was tokenized with another codec than the one a model / pipeline expects."""


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
    if exists(os.path.join(root, "dataset_info.json")):
        return [root]
    if is_remote(root):
        return []
    for depth_glob in ("*", os.path.join("*", "*"), os.path.join("*", "*", "*")):
        found = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(root, depth_glob, "dataset_info.json"))
                       if "incomplete." not in p)
        if found:
            return found
    return []


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
    md = read_json_file(os.path.join(dirs[0], "metadata.json")) or {}
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
