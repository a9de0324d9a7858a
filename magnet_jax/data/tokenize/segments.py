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
    """A decoded, converted file and its segments ``[(offset_samples, wav [C, L])]``."""
    item: CorpusItem
    source_sample_rate: int
    segments: list[tuple[int, np.ndarray]]
    dropped_silent: int = 0


# Segmenting policy. Let ``hop`` be the codec hop length. Segment lengths are multiples of ``hop``,
# so every segment starts on a codec frame boundary of the whole file (``offset_frames``):
# * a file is cut into consecutive segments of ``S = segment_seconds`` (rounded to a multiple of
#   ``hop``) starting at 0;
# * the remainder after the last full segment is rounded *down* to a multiple of
#   ``Q = length_quantum_seconds`` and kept as a shorter final segment if that is at least
#   ``min_seconds``, otherwise dropped;
# * a file shorter than ``min_seconds`` (or leaving no segment after this rounding) is ``too_short``;
# * segments whose RMS level is below ``silence_db`` are dropped (``dropped_silent_segments`` in the
#   report entry); a file left without segments is skipped (``silent``).
# Segment lengths take at most S / Q values, so the encoder compiles few shapes.
def plan_segments(num_samples: int, sample_rate: int, hop: int, opts: TokenizeOptions) -> list[tuple[int, int]]:
    """``[(offset, length)]`` in samples following the segmenting policy above."""
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
