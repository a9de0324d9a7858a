"""Segment planning: one decoded file -> the segments that are encoded and stored.

Per-file policy (decoding, down-mixing, resampling, loudness and silence in
:mod:`magnet_jax.data.audio_io`): every input ends up either *kept* (>= 1 segment written) or
*skipped* with a reason, and appears exactly once in the report.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from magnet_jax.data import audio_io
from magnet_jax.data.audio_io import AudioError
from magnet_jax.data.tokenize.corpus import ERROR, CorpusItem
from magnet_jax.data.tokenize.options import TokenizeOptions


@dataclasses.dataclass
class PreparedFile:
    """A decoded, converted file and its segments ``[(offset_samples, wav [C, L])]`` (short files: ``wav`` is
    zero-padded; ``frames[offset]`` is the number of codec frames of real audio to keep)."""
    item: CorpusItem
    source_sample_rate: int
    segments: list[tuple[int, np.ndarray]]
    dropped_silent: int = 0
    frames: dict[int, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


# Segmenting policy (the input pipeline then crops at any offset of the whole file, as audiocraft's
# AudioDataset). Let ``hop`` be the codec hop length; every segment starts on a frame boundary of the file:
# * a file longer than ``S = segment_seconds`` is cut into segments of exactly ``S`` starting every
#   ``S - overlap_seconds`` (default min(30 s, S / 2)), plus a last one ending at the end of the file
#   (less than one hop of audio is lost); so every window of up to ``overlap_seconds`` at any offset
#   lies inside one stored segment;
# * a file of at most ``S`` is one segment, zero-padded to a multiple of ``Q = length_quantum_seconds``
#   for encoding (few compiled shapes; audiocraft also zero-pads short clips before encoding), and its
#   codes are cut back to the frames of real audio;
# * a file shorter than ``min_seconds`` is ``too_short``;
# * segments whose RMS level is below ``silence_db`` are dropped (``dropped_silent_segments`` in the
#   report entry); a file left without segments is skipped (``silent``).
def plan_segments(num_samples: int, sample_rate: int, hop: int, opts: TokenizeOptions) -> list[tuple[int, int]]:
    """``[(offset, length)]`` in samples of real audio, following the segmenting policy above."""
    seg = hop * max(1, round(opts.segment_seconds * sample_rate / hop))
    stride = max(hop, seg - hop * round(opts.overlap * sample_rate / hop))
    min_len = max(1, int(math.ceil(opts.min_seconds * sample_rate)))
    if num_samples < min_len:
        return []
    if num_samples <= seg:
        return [(0, num_samples)]
    last = ((num_samples - seg) // hop) * hop
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return [(s, seg) for s in starts]


def padded_length(length: int, sample_rate: int, hop: int, opts: TokenizeOptions) -> int:
    """The encoded length of a segment of ``length`` real samples (short files: next multiple of ``Q``)."""
    seg = hop * max(1, round(opts.segment_seconds * sample_rate / hop))
    if length >= seg:
        return length
    quantum = hop * max(1, round(opts.length_quantum_seconds * sample_rate / hop))
    return min(seg, -(-length // quantum) * quantum)


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
                         f"{wav.shape[1] / sample_rate:.3f} s is shorter than min_seconds={opts.min_seconds:g}")
    segs, frames, dropped = [], {}, 0
    thr = opts.level.silence_db
    for off, length in plan:
        x = wav[:, off:off + length]
        if thr is not None and audio_io.rms_db(x) < thr:
            dropped += 1
            continue
        n = padded_length(length, sample_rate, hop, opts)
        segs.append((off, np.ascontiguousarray(np.pad(x, ((0, 0), (0, n - length))) if n > length else x)))
        frames[off] = -(-length // hop)
    if not segs:
        raise AudioError(audio_io.SILENT, f"all {len(plan)} segments are below {thr:g} dBFS")
    return PreparedFile(item, src_sr, segs, dropped, frames, round(wav.shape[1] / sample_rate, 3))


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
