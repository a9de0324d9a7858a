"""Grain input pipeline for training on a tokenized dataset (``tools/tokenize_dataset.py`` output).

Per example: a random crop of ``segment_frames`` frames (clips shorter than the segment but at
least ``min_segment_ratio`` of it are zero-padded with a padding mask; shorter ones are dropped, as
audiocraft's ``min_segment_ratio``), the description tokenized with T5 to a static length (with word
dropout for training). Seeded shuffling with a new order each epoch; each process reads its own
slice (``ds[process_index::process_count]``); optional worker processes; the iterator state is
checkpointable (``grain.checkpoint.CheckpointSave``).
"""
from __future__ import annotations

import random
from pathlib import Path

import grain
import numpy as np

from magnet_jax.data.tokenize.codec_record import find_dataset_dirs
from magnet_jax.text import tokenize


def find_builder_dir(data_dir: str, name: str = "") -> Path:
    """The finished dataset folder under ``data_dir`` (optionally for dataset ``name``)."""
    root = Path(data_dir).expanduser()
    hits = [Path(d) for d in find_dataset_dirs(str(root)) if not name or name in Path(d).parts]
    if not hits:
        raise FileNotFoundError(f"no TFDS dataset (dataset_info.json) under {str(root)!r}"
                                + (f" named {name!r}" if name else "") + ": run tools/tokenize_dataset.py first")
    if len(hits) > 1:
        raise ValueError(f"several datasets under {str(root)!r}: {[str(h) for h in hits]}; set --config.dataset_name")
    return hits[0]


def data_source(builder_dir: Path, split: str):
    import tensorflow_datasets as tfds
    return tfds.builder_from_directory(str(builder_dir)).as_data_source(split)


class CropTokenize:
    """Random crop / pad of the codes and static-length tokenization of the description."""

    def __init__(self, segment_frames: int, tokenizer, text_len: int, word_dropout: float, crop: bool = True):
        self.T, self.tok, self.S = int(segment_frames), tokenizer, int(text_len)
        self.word_dropout, self.crop = float(word_dropout), crop

    def __call__(self, ex, rng: np.random.Generator):
        codes = np.asarray(ex["codes"], np.int32)
        n = codes.shape[-1]
        if n >= self.T:
            start = int(rng.integers(0, n - self.T + 1)) if self.crop else 0
            codes, valid = codes[:, start:start + self.T], self.T
        else:
            codes, valid = np.pad(codes, ((0, 0), (0, self.T - n))), n
        text = ex.get("description", b"")
        text = text.decode() if isinstance(text, bytes) else str(text)
        ids, mask = tokenize(self.tok, [text], pad_to=self.S, word_dropout=self.word_dropout,
                             rng=random.Random(int(rng.integers(2 ** 31))))
        return {"codes": codes, "padding_mask": np.arange(self.T) < valid, "text_ids": ids[0], "text_mask": mask[0]}


class _LongEnough:
    def __init__(self, min_frames: int):
        self.min_frames = min_frames

    def __call__(self, ex) -> bool:
        return int(np.asarray(ex["codes"]).shape[-1]) >= self.min_frames


def make_dataset(source, *, segment_frames: int, tokenizer, text_len: int, batch_size: int, seed: int,
                 min_segment_ratio: float = 0.8, word_dropout: float = 0.0, train: bool = True,
                 process_index: int = 0, process_count: int = 1, worker_count: int = 0):
    """A grain IterDataset of batches ``{codes int32 [b,K,T], padding_mask bool [b,T], text_ids, text_mask}``
    with ``b = batch_size`` (the per-process batch). ``train=False``: no shuffle, no repeat, crop at 0."""
    ds = grain.MapDataset.source(source).filter(_LongEnough(int(np.ceil(min_segment_ratio * segment_frames))))
    if train:
        ds = ds.shuffle(seed=seed).repeat(None)
    ds = ds[process_index::process_count]
    ds = ds.random_map(CropTokenize(segment_frames, tokenizer, text_len, word_dropout if train else 0.0, crop=train),
                       seed=seed)
    it = ds.to_iter_dataset().batch(batch_size, drop_remainder=True)
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it
