"""Which stored segments belong to which file: what the input pipeline needs to crop at any offset of a file.

Written by the tokenizer next to the dataset (``segment_index.json``, in the source's example order);
rebuilt by reading every example (``path``, ``offset_frames``, ``num_frames``) for datasets without it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np

INDEX_FILENAME = "segment_index.json"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SegmentIndex:
    """Per example ``i``: its file ``file[i]`` (into ``paths``), ``offset[i]`` and ``frames[i]`` (codec frames)."""
    paths: tuple[str, ...]
    file: np.ndarray
    offset: np.ndarray
    frames: np.ndarray

    def __len__(self) -> int:
        return int(self.file.shape[0])

    @property
    def num_files(self) -> int:
        return len(self.paths)

    def segments_of(self) -> list[np.ndarray]:
        """Per file, its example indices sorted by offset."""
        order = np.lexsort((self.offset, self.file))
        return np.split(order, np.flatnonzero(np.diff(self.file[order])) + 1) if len(order) else []

    def file_frames(self) -> np.ndarray:
        """Per file, the frames covered (end of its last segment)."""
        out = np.zeros(self.num_files, np.int64)
        np.maximum.at(out, self.file, self.offset + self.frames)
        return out

    def to_json(self) -> dict:
        return {"paths": list(self.paths), "file": self.file.tolist(), "offset_frames": self.offset.tolist(),
                "num_frames": self.frames.tolist()}

    @classmethod
    def from_records(cls, records) -> "SegmentIndex":
        """From ``(path, offset_frames, num_frames)`` per example, in example order."""
        ids: dict[str, int] = {}
        file, off, frames = [], [], []
        for path, o, n in records:
            path = path.decode() if isinstance(path, bytes) else str(path)
            file.append(ids.setdefault(path, len(ids)))
            off.append(int(o))
            frames.append(int(n))
        return cls(tuple(ids), np.asarray(file, np.int64), np.asarray(off, np.int64), np.asarray(frames, np.int64))


def build_index(source) -> SegmentIndex:
    """Read every example of ``source`` (a random-access data source) once."""
    return SegmentIndex.from_records((ex["path"], ex["offset_frames"], ex["num_frames"])
                                     for ex in (source[i] for i in range(len(source))))


def load_index(dataset_dir: str, source) -> SegmentIndex:
    """The stored index of ``dataset_dir`` if it matches ``source``, else one built from ``source``."""
    p = os.path.join(str(dataset_dir), INDEX_FILENAME)
    if "://" not in p and os.path.isfile(p):
        with open(p, encoding="utf-8") as fh:
            d = json.load(fh)
        if len(d["file"]) == len(source):
            return SegmentIndex(tuple(d["paths"]), np.asarray(d["file"], np.int64),
                                np.asarray(d["offset_frames"], np.int64), np.asarray(d["num_frames"], np.int64))
        log.warning("%s does not match the dataset (%d vs %d examples): rebuilding it", p, len(d["file"]),
                    len(source))
    else:
        log.warning("%s has no %s (made before tokenizer 1.1): reading every example once to index it", dataset_dir,
                    INDEX_FILENAME)
    return build_index(source)
