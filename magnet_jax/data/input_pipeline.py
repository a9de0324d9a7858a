"""Grain input pipeline for training on a tokenized dataset (``tools/tokenize_dataset.py`` output).

Crop / pad policy = audiocraft's ``AudioDataset`` (``magnet_32khz.yaml``): per example a *file* is drawn
uniformly (``sample_on_duration``: with probability proportional to its duration), then a window of
``segment_frames`` starting at ``seek ~ U{0 .. max(0, F - ceil(min_segment_ratio * T))}`` (``F`` = the file's
frames), taken from the stored segment that holds it (:mod:`magnet_jax.data.segment_index`). Short files
and tail windows are kept and padded: padded frames hold the mask id (audiocraft's
``padding_with_special_token``) and are False in ``padding_mask``, so the loss ignores them. The
description is built from the metadata (:mod:`magnet_jax.data.descriptions`) and tokenized with T5 to a
static length (with word dropout for training). Seeded shuffling with a new order each epoch; each process
reads its own slice; optional worker processes; the iterator state is checkpointable.

Differences from audiocraft: files are drawn without replacement within an epoch (a shuffled permutation,
not i.i.d. draws); codes come from segments encoded offline (a window's edge frames see the audio around it).
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import grain
import numpy as np

from magnet_jax.data.descriptions import augment_description
from magnet_jax.data.segment_index import SegmentIndex, build_index, load_index
from magnet_jax.data.tokenize.codec_record import find_dataset_dirs
from magnet_jax.text import tokenize

log = logging.getLogger(__name__)


def _version_key(path: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in path.name.split("."))


def find_builder_dir(data_dir: str, name: str = "") -> Path:
    """The finished dataset folder under ``data_dir`` (optionally for dataset ``name``; the newest version of
    one dataset wins)."""
    root = Path(data_dir).expanduser()
    hits = [Path(d) for d in find_dataset_dirs(str(root)) if not name or name in Path(d).parts]
    if not hits:
        raise FileNotFoundError(f"no TFDS dataset (dataset_info.json) under {str(root)!r}"
                                + (f" named {name!r}" if name else "") + ": run tools/tokenize_dataset.py first")
    if len({h.parent for h in hits}) == 1:
        return max(hits, key=_version_key)
    raise ValueError(f"several datasets under {str(root)!r}: {[str(h) for h in hits]}; set --config.dataset_name")


def data_source(builder_dir: Path, split: str):
    import tensorflow_datasets as tfds
    return tfds.builder_from_directory(str(builder_dir)).as_data_source(split)


def crop_window(segments: list[tuple[int, int]], seek: int, window: int) -> tuple[int, int]:
    """(segment position in ``segments``, start frame inside it) for a window starting at frame ``seek`` of
    the file. ``segments``: ``(offset, frames)`` sorted by offset. The segment holding the most of
    ``[seek, seek + window)`` is used; a window no segment holds whole (a dataset stored with less overlap than
    the window, or a dropped silent segment) slides back to end at that segment's end."""
    end = min(seek + window, max(o + n for o, n in segments))
    cover = [min(o + n, end) - max(o, seek) for o, n in segments]
    k = cover.index(max(cover))
    o, n = segments[k]
    start = max(seek, o) if end <= o + n else min(max(seek, o), max(o, o + n - window))
    return k, start - o


class FileCrop:
    """One training example from a file index: file sampling, crop / pad, description, tokenization."""

    def __init__(self, source, index: SegmentIndex, *, segment_frames: int, pad_id: int, tokenizer, text_len: int,
                 word_dropout: float = 0.0, min_segment_ratio: float = 1.0, crop: bool = True,
                 sample_on_duration: bool = False, merge_text_p: float = 0.0, drop_desc_p: float = 0.0,
                 drop_other_p: float = 0.0):
        self.source, self.T, self.pad_id = source, int(segment_frames), int(pad_id)
        self.tok, self.S, self.word_dropout = tokenizer, int(text_len), float(word_dropout)
        self.min_frames, self.crop = int(np.ceil(min_segment_ratio * self.T)), crop
        self.augment = dict(merge_text_p=merge_text_p, drop_desc_p=drop_desc_p, drop_other_p=drop_other_p)
        self.files = [[(int(index.offset[i]), int(index.frames[i]), int(i)) for i in seg]
                      for seg in index.segments_of()]
        self.file_frames = np.asarray([max(o + n for o, n, _ in segs) for segs in self.files], np.float64)
        self.weights = self.file_frames / self.file_frames.sum() if sample_on_duration else None

    def __call__(self, file_id, rng: np.random.Generator):
        if self.weights is not None:  # audiocraft sample_on_duration: a file with probability ~ duration
            file_id = int(rng.choice(len(self.weights), p=self.weights))
        segs = self.files[int(file_id)]
        max_seek = max(0, int(self.file_frames[int(file_id)]) - self.min_frames)
        seek = int(rng.integers(0, max_seek + 1)) if self.crop else 0
        k, start = crop_window([(o, n) for o, n, _ in segs], seek, self.T)
        ex = self.source[segs[k][2]]
        codes = np.asarray(ex["codes"], np.int32)[:, start:start + self.T]
        valid = codes.shape[-1]
        codes = np.pad(codes, ((0, 0), (0, self.T - valid)), constant_values=self.pad_id)
        text_rng = random.Random(int(rng.integers(2 ** 31)))
        text = augment_description(ex, text_rng, **self.augment) if self.crop else _plain(ex.get("description"))
        ids, mask = tokenize(self.tok, [text], pad_to=self.S, word_dropout=self.word_dropout, rng=text_rng)
        return {"codes": codes, "padding_mask": np.arange(self.T) < valid, "text_ids": ids[0], "text_mask": mask[0]}


def _plain(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v or "")


def make_dataset(source, *, segment_frames: int, pad_id: int, tokenizer, text_len: int, batch_size: int, seed: int,
                 min_segment_ratio: float = 0.8, word_dropout: float = 0.0, train: bool = True,
                 process_index: int = 0, process_count: int = 1, worker_count: int = 0,
                 index: SegmentIndex | None = None, builder_dir: str | Path | None = None,
                 sample_on_duration: bool = False, merge_text_p: float = 0.0, drop_desc_p: float = 0.0,
                 drop_other_p: float = 0.0):
    """A grain IterDataset of batches ``{codes int32 [b,K,T], padding_mask bool [b,T], text_ids, text_mask}``
    with ``b = batch_size`` (the per-process batch); one example per file per epoch. ``pad_id``: the code of
    padded frames (the model's mask id). ``train=False``: every file once at offset 0, no augmentation."""
    if index is None:
        index = load_index(str(builder_dir), source) if builder_dir is not None else build_index(source)
    fn = FileCrop(source, index, segment_frames=segment_frames, pad_id=pad_id, tokenizer=tokenizer,
                  text_len=text_len, word_dropout=word_dropout if train else 0.0,
                  min_segment_ratio=min_segment_ratio, crop=train, sample_on_duration=sample_on_duration and train,
                  **(dict(merge_text_p=merge_text_p, drop_desc_p=drop_desc_p, drop_other_p=drop_other_p)
                     if train else {}))
    ds = grain.MapDataset.range(len(fn.files))
    if train:
        ds = ds.shuffle(seed=seed).repeat(None)
    ds = ds[process_index::process_count]
    it = ds.random_map(fn, seed=seed).to_iter_dataset().batch(batch_size, drop_remainder=True)
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it
