"""Grain input pipeline of random audio crops for codec training (audiocraft ``AudioDataset`` for
the compression solver: ``segment_duration`` 1 s crops at the codec's rate and channel count).

The corpus comes from the tokenizer's listing (a manifest ``.jsonl`` of audiocraft's format, or a
folder), read with :func:`magnet_jax.data.audio_io.load_audio` (down-mix, resample, clipping
guard). Files the listing or a probe of their header reject are left out with a warning; a held-out
set is either given (``eval_manifest`` / ``eval_audio_dir``) or the last ``eval_fraction`` of the
sorted files. Training examples: a seeded shuffle of the files, repeated forever, one uniformly
random crop per visit (clips shorter than the crop are zero-padded at the end); held-out examples:
the crop at offset 0. Each process reads its own slice of the files; the iterator state is
checkpointable (``grain.checkpoint``), so a resumed run sees the same crops.
"""
from __future__ import annotations

import logging
import math

import grain
import numpy as np

from magnet_jax.data.audio_io import AudioError, load_audio
from magnet_jax.data.tokenize.corpus import list_audio_dir, list_manifest

log = logging.getLogger("magnet_jax.codec_training")


def list_files(manifest: str = "", audio_dir: str = "") -> list[str]:
    """Audio paths of a manifest or folder (exactly one of them), listing errors left out."""
    if bool(manifest) == bool(audio_dir):
        raise ValueError("give exactly one of --config.manifest=FILE.jsonl and --config.audio_dir=DIR")
    items = list_manifest(manifest) if manifest else list_audio_dir(audio_dir)
    bad = [it for it in items if it.error]
    for it in bad[:5]:
        log.warning("skipping %s: %s", it.path, it.error)
    paths = [it.path for it in items if not it.error]
    if not paths:
        raise ValueError(f"no usable audio file in {manifest or audio_dir!r}")
    return paths


def split_files(paths: list[str], eval_fraction: float) -> tuple[list[str], list[str]]:
    """(train, held-out): the last ``ceil(eval_fraction * n)`` files are held out (none if n < 2)."""
    n_eval = min(len(paths) - 1, math.ceil(eval_fraction * len(paths))) if len(paths) > 1 else 0
    return (paths[:len(paths) - n_eval], paths[len(paths) - n_eval:]) if n_eval > 0 else (paths, [])


class LoadCrop:
    """Path -> float32 ``[C, segment]`` crop at the codec's rate (random offset when training)."""

    def __init__(self, sample_rate: int, channels: int, segment: int, train: bool):
        self.sample_rate, self.channels, self.segment, self.train = sample_rate, channels, segment, train

    def __call__(self, path, rng: np.random.Generator):
        try:
            wav, _, _ = load_audio(path, self.sample_rate, self.channels)
        except AudioError as e:     # unreadable after the header probe: a silent example, logged
            log.warning("cannot read %s (%s): using silence", path, e)
            wav = np.zeros((self.channels, self.segment), np.float32)
        n = wav.shape[-1]
        if n >= self.segment:
            start = int(rng.integers(0, n - self.segment + 1)) if self.train else 0
            return wav[:, start:start + self.segment]
        return np.pad(wav, ((0, 0), (0, self.segment - n)))


def make_dataset(paths: list[str], *, sample_rate: int, channels: int, segment: int, batch_size: int, seed: int,
                 train: bool = True, process_index: int = 0, process_count: int = 1, worker_count: int = 0):
    """Batches ``float32 [b, C, segment]`` (``b`` = the per-process batch). ``train=False``: one
    pass, crops at 0, the last incomplete batch dropped."""
    ds = grain.MapDataset.source(list(paths))
    if train:
        ds = ds.shuffle(seed=seed).repeat(None)
    ds = ds[process_index::process_count]
    ds = ds.random_map(LoadCrop(sample_rate, channels, segment, train), seed=seed)
    it = ds.to_iter_dataset().batch(batch_size, drop_remainder=True)
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it


def eval_batches(paths: list[str], *, sample_rate: int, channels: int, segment: int, batch_size: int,
                 max_batches: int) -> list[np.ndarray]:
    """The held-out set as fixed batches: the consecutive non-overlapping crops of every file (a
    short file: one zero-padded crop), cycled to fill up to ``max_batches`` batches."""
    crops = []
    for p in paths:
        try:
            wav, _, _ = load_audio(p, sample_rate, channels)
        except AudioError as e:
            log.warning("held-out file %s left out: %s", p, e)
            continue
        n = max(1, wav.shape[-1] // segment)
        wav = np.pad(wav, ((0, 0), (0, max(0, n * segment - wav.shape[-1]))))
        crops += [wav[:, k * segment:(k + 1) * segment] for k in range(n)]
    if not crops or max_batches <= 0:
        return []
    n_batches = max(1, min(max_batches, len(crops) // batch_size))
    crops = (crops * (-(-n_batches * batch_size // len(crops))))[:n_batches * batch_size]
    return [np.stack(crops[i * batch_size:(i + 1) * batch_size]) for i in range(n_batches)]
