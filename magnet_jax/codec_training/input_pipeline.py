"""Grain input pipeline of random audio crops for codec training (audiocraft ``AudioDataset`` for
the compression solver: ``segment_duration`` 1 s crops at the codec's rate and channel count).

The corpus comes from the tokenizer's listing (a manifest ``.jsonl`` of audiocraft's format, or a
folder), read with :func:`magnet_jax.data.audio_io.load_audio` (down-mix, resample, clipping
guard). Every input is decoded once first: files the listing rejects or that do not decode to finite audio
with frames (text, 0-byte, truncated, NaN) are left out with a warning and counted; a corpus with none left is
refused (:class:`CorpusError`); a held-out
set is either given (``eval_manifest`` / ``eval_audio_dir``) or the last ``eval_fraction`` of the
sorted files. Training examples: a seeded shuffle of the files, repeated forever, one uniformly
random crop per visit (clips shorter than the crop are zero-padded at the end); held-out examples:
the crop at offset 0. Each process reads its own slice of the files; the iterator state is
checkpointable (``grain.checkpoint``), so a resumed run sees the same crops.
"""
from __future__ import annotations

import collections
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import grain
import numpy as np

from magnet_jax.data.audio_io import AudioError, load_audio, read_audio
from magnet_jax.data.tokenize.corpus import CorpusError, list_audio_dir, list_manifest

log = logging.getLogger("magnet_jax.codec_training")


def list_files(manifest: str = "", audio_dir: str = "") -> list[str]:
    """Audio paths of a manifest or folder (exactly one of them), listing errors left out."""
    if bool(manifest) == bool(audio_dir):
        raise ValueError("give exactly one of --config.manifest=FILE.jsonl and --config.audio_dir=DIR")
    items = list_manifest(manifest) if manifest else list_audio_dir(audio_dir)
    skipped = [(it.path, it.error) for it in items if it.error]
    listed = [it.path for it in items if not it.error]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        problems = list(pool.map(probe, listed))
    skipped += [(p, e) for p, e in zip(listed, problems) if e]
    paths = [p for p, e in zip(listed, problems) if not e]
    for path, why in skipped[:5]:
        log.warning("skipping %s: %s", path, why)
    reasons = collections.Counter(str(why).split(":")[0] for _, why in skipped)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    if not paths:
        raise CorpusError(f"no usable audio in {manifest or audio_dir!r}: all {len(items)} inputs unusable"
                          + (f" ({summary})" if summary else ""))
    if skipped:
        log.warning("%d of %d inputs usable, %d skipped (%s)", len(paths), len(items), len(skipped), summary)
    return paths


def probe(path: str) -> str | None:
    """None if ``path`` decodes to finite audio with frames, else why not (the tokenizer's reason tags)."""
    try:
        wav, _ = read_audio(path)
        if wav.shape[-1] == 0:
            return "empty: file holds 0 audio frames"
        if not np.all(np.isfinite(wav)):
            return "non_finite: NaN/inf samples"
    except AudioError as e:
        return e.report_reason()
    except Exception as e:  # noqa: BLE001 - any decoder failure is this file's problem
        return f"error: {type(e).__name__}: {e}"
    return None


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
    """The held-out set as fixed batches: the non-overlapping crops of every file (a short file: one
    zero-padded crop), taken round-robin over the files (every file's first crop, then every file's second,
    ...), so that a few batches already span every held-out file, cycled to fill up to ``max_batches``
    batches. (Taken file by file, two batches of 8 crops were the first 8 s of one file.)"""
    per_file = []
    for p in paths:
        try:
            wav, _, _ = load_audio(p, sample_rate, channels)
        except AudioError as e:
            log.warning("held-out file %s left out: %s", p, e)
            continue
        n = max(1, wav.shape[-1] // segment)
        wav = np.pad(wav, ((0, 0), (0, max(0, n * segment - wav.shape[-1]))))
        per_file.append([wav[:, k * segment:(k + 1) * segment] for k in range(n)])
    crops = [f[k] for k in range(max(map(len, per_file), default=0)) for f in per_file if k < len(f)]
    if not crops or max_batches <= 0:
        return []
    n_batches = max(1, min(max_batches, len(crops) // batch_size))
    crops = (crops * (-(-n_batches * batch_size // len(crops))))[:n_batches * batch_size]
    return [np.stack(crops[i * batch_size:(i + 1) * batch_size]) for i in range(n_batches)]
