"""Batched encoding of segments with few static shapes, and the stored example of one segment.

EnCodec is not causal for the released music codecs: zero-padding a segment to a longer length
changes the codes of its last frames (reflect padding, receptive field). So every segment is
encoded **at its planned length** (:mod:`.segments`), and the set of shapes stays small: segments of equal
length are batched together across files, the batch dimension padded with zero rows to a power of
two <= ``batch_size`` (rows do not interact, so padding rows never change the real rows' codes).
Codes therefore equal ``codec.encode`` of the planned segment alone (tested bit-exactly).
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
from typing import Any, Iterator

import numpy as np

from magnet_jax.data.tokenize.corpus import TEXT_FIELDS
from magnet_jax.data.tokenize.segments import PreparedFile


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
    codes = codes[:, :prep.frames.get(offset, codes.shape[1])]  # short files: drop the frames of padding
    t = int(codes.shape[1])
    ex = {k: meta.get(k, "") for k in TEXT_FIELDS}
    ex.update(codes=codes.astype(np.int16), num_frames=t, bpm=np.float32(meta.get("bpm", float("nan"))),
              path=item.path, offset_seconds=np.float32(offset / sample_rate), offset_frames=offset // hop,
              duration_seconds=np.float32(t * hop / sample_rate), sample_rate=prep.source_sample_rate)
    return f"{item.path}#{offset // hop}", ex


def encode_file(codec, prep: PreparedFile, batch_size: int) -> Iterator[tuple[str, dict]]:
    """All examples of one file (segments of equal length batched together); used by Beam."""
    enc = SegmentEncoder(codec, batch_size, max_pending=1 << 30)
    done = []
    for off, w in prep.segments:
        done += enc.add(w, off)
    done += enc.flush()
    for off, cd in sorted(done, key=lambda x: x[0]):
        yield make_example(prep, off, cd, codec.sample_rate, codec.hop_length)


def prefetch(fn, items: list, workers: int) -> Iterator[tuple[Any, Any]]:
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
