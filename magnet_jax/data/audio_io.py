"""Reading audio files for tokenization: decode, validate, down-mix, resample, level.

Everything a corpus can throw at the tokenizer ends in one of two outcomes: a float32 array
``[C, N]`` at the codec's rate and channel count, or an :class:`AudioError` whose ``reason`` is a
short, stable, machine-readable tag (``missing``, ``unreadable``, ``truncated``, ``empty``,
``non_finite``, ``silent``, ``too_short``) and whose message says what exactly was wrong. The
tokenizer records that reason in its report and moves on to the next file.

Formats: whatever the bundled libsndfile reads through :mod:`soundfile` -- WAV (any PCM / float
subtype), FLAC, OGG/Vorbis, OGG/Opus, MP3 (libsndfile >= 1.1), AIFF, ...

Processing order in :func:`load_audio` (each step documented on its function):

1. decode the whole file as float32 (integer PCM maps to [-1, 1));
2. truncation check (a WAV whose data chunk is shorter than its header says, a stream that
   decodes fewer frames than announced, or a decoder error mid-stream) -> ``truncated``;
3. empty (0 frames) -> ``empty``; any NaN / inf sample -> ``non_finite`` (checked *before*
   resampling, which would smear one bad sample over its neighbours);
4. channel conversion (:func:`convert_channels`): mono targets take the mean of all channels;
   a mono source feeding a multi-channel codec is duplicated; otherwise the first ``C`` channels;
5. resampling to the codec rate with soxr (:func:`resample`, ``HQ`` quality by default);
6. level (:func:`apply_level`): by default **no normalisation**, so the codec sees the same input
   distribution as in audiocraft training, only a clipping guard (a clip whose peak exceeds
   full scale, e.g. float files or resampler overshoot, is scaled down as a whole to peak 1.0 --
   rescaled, never hard-clipped); optional ``peak`` or ``rms`` normalisation;
7. silence: a clip whose RMS level is below ``silence_db`` dBFS (default -60) -> ``silent``.
"""
from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")

# Stable reason tags written to the report.
MISSING, UNREADABLE, TRUNCATED, EMPTY = "missing", "unreadable", "truncated", "empty"
NON_FINITE, SILENT, TOO_SHORT = "non_finite", "silent", "too_short"


class AudioError(Exception):
    """A file that cannot be used, with a short ``reason`` tag and a human-readable message."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def report_reason(self) -> str:
        """``"<tag>: <details>"``, the string stored in the report."""
        return f"{self.reason}: {self.message}"


@dataclasses.dataclass(frozen=True)
class LevelOptions:
    """Loudness handling, applied per file after resampling.

    ``normalize``: ``"none"`` (default; only the clipping guard), ``"peak"`` (scale so the peak is
    ``peak_db`` dBFS) or ``"rms"`` (scale so the RMS level is ``rms_db`` dBFS, then the clipping
    guard). ``silence_db``: clips whose RMS level (before normalisation) is below this are
    rejected as silent; ``None`` keeps them.
    """
    normalize: str = "none"
    peak_db: float = -1.0
    rms_db: float = -20.0
    silence_db: float | None = -60.0

    def __post_init__(self):
        if self.normalize not in ("none", "peak", "rms"):
            raise ValueError(f"normalize must be 'none', 'peak' or 'rms', got {self.normalize!r}")


def db(x: float) -> float:
    """Amplitude ratio -> dBFS (``-inf`` for 0)."""
    return float(20.0 * np.log10(x)) if x > 0 else float("-inf")


def rms_db(wav: np.ndarray) -> float:
    """RMS level of ``wav`` (all channels together) in dBFS."""
    if wav.size == 0:
        return float("-inf")
    return db(float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))))


# --------------------------------------------------------------------------- decoding
def _wav_declared_data_bytes(path: str) -> tuple[int, int] | None:
    """(declared size of the WAV ``data`` chunk, bytes actually present) or None if not a RIFF WAV."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            fmt = "<I" if head[:4] == b"RIFF" else ">I"
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                hdr = fh.read(8)
                if len(hdr) < 8:
                    return None
                cid, clen = hdr[:4], struct.unpack(fmt, hdr[4:])[0]
                if cid == b"data":
                    if clen in (0, 0xFFFFFFFF):  # streaming writers leave the size unset
                        return None
                    return clen, size - pos - 8
                pos += 8 + clen + (clen & 1)
    except OSError:
        return None
    return None


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a whole file -> (float32 ``[C, N]``, sample rate); raises :class:`AudioError`.

    Truncated files are rejected (``truncated``), not silently shortened: a WAV whose data chunk
    is shorter than its header declares, a stream yielding fewer frames than its header announces
    (beyond 1 % + 2 MP3 frames of slack for encoder padding), or a decoder error after opening.
    Remote paths (``gs://``, ``s3://``, ``hdfs://``...) are copied to a local temporary file
    through Apache Beam's filesystems first (needs ``apache-beam`` and the scheme's extra).
    """
    path = os.fspath(path)
    if "://" in path:
        return _read_remote(path)
    return _read_local(path)


def _read_remote(path: str) -> tuple[np.ndarray, int]:
    import tempfile
    try:
        from apache_beam.io.filesystems import FileSystems
        if not FileSystems.exists(path):
            raise AudioError(MISSING, f"no such file: {path}")
        with FileSystems.open(path) as fh:
            data = fh.read()
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001 - any transport problem is this file's problem
        raise AudioError(UNREADABLE, f"cannot fetch {path} ({_one_line(e)})") from None
    with tempfile.NamedTemporaryFile(suffix=os.path.splitext(path)[1]) as tmp:
        tmp.write(data)
        tmp.flush()
        return _read_local(tmp.name)


def _read_local(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not os.path.exists(path):
        raise AudioError(MISSING, f"no such file: {path}")
    if not os.path.isfile(path):
        raise AudioError(UNREADABLE, f"not a regular file: {path}")
    if os.path.getsize(path) == 0:
        raise AudioError(EMPTY, "file has 0 bytes")
    try:
        info = sf.info(path)
    except Exception as e:  # LibsndfileError, RuntimeError, TypeError on odd headers
        raise AudioError(UNREADABLE, f"not a readable audio file ({_one_line(e)})") from None
    declared = _wav_declared_data_bytes(path)
    if declared is not None and declared[1] < declared[0]:
        raise AudioError(TRUNCATED, f"WAV data chunk declares {declared[0]} bytes, file holds {declared[1]}")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(TRUNCATED if info.frames > 0 else UNREADABLE,
                         f"decoding failed after a valid header ({_one_line(e)})") from None
    n = data.shape[0]
    if info.frames > 0 and n < info.frames - (0.01 * info.frames + 2304):
        raise AudioError(TRUNCATED, f"header announces {info.frames} frames, only {n} decodable")
    if sr <= 0:
        raise AudioError(UNREADABLE, f"invalid sample rate {sr}")
    return np.ascontiguousarray(data.T), int(sr)


def _one_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0] if s else ''}".strip()


# --------------------------------------------------------------------------- transforms
def convert_channels(wav: np.ndarray, channels: int) -> np.ndarray:
    """``[C, N]`` -> ``[channels, N]``: mean of all channels for a mono target, duplication of a
    mono source for a multi-channel target, else the first ``channels`` channels (a source with
    fewer, but more than one, channels than the target is an error)."""
    c = wav.shape[0]
    if c == channels:
        return wav
    if channels == 1:
        return wav.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    if c == 1:
        return np.repeat(wav, channels, axis=0)
    if c > channels:
        return wav[:channels]
    raise AudioError(UNREADABLE, f"cannot map {c} channels onto a {channels}-channel codec")


def resample(wav: np.ndarray, sr_in: int, sr_out: int, quality: str = "HQ") -> np.ndarray:
    """``[C, N]`` float32 resampled with soxr (``quality``: QQ, LQ, MQ, HQ, VHQ)."""
    if sr_in == sr_out:
        return wav
    import soxr
    out = soxr.resample(np.ascontiguousarray(wav.T), sr_in, sr_out, quality=quality)
    return np.ascontiguousarray(np.asarray(out, np.float32).reshape(-1, wav.shape[0]).T)


def apply_level(wav: np.ndarray, opts: LevelOptions) -> np.ndarray:
    """Loudness policy of :class:`LevelOptions` (see the module docstring); returns float32."""
    if opts.normalize == "peak":
        peak = float(np.max(np.abs(wav))) if wav.size else 0.0
        if peak > 0:
            wav = wav * np.float32(10 ** (opts.peak_db / 20) / peak)
    elif opts.normalize == "rms":
        level = rms_db(wav)
        if np.isfinite(level):
            wav = wav * np.float32(10 ** ((opts.rms_db - level) / 20))
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak > 1.0:  # clipping guard: rescale the whole clip, never hard-clip
        wav = wav * np.float32(1.0 / peak)
    return wav.astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, sample_rate: int, channels: int, *,
               level: LevelOptions = LevelOptions(), quality: str = "HQ") -> tuple[np.ndarray, int, int]:
    """Read + validate + convert a file for a codec -> (float32 ``[channels, N]`` at
    ``sample_rate``, source sample rate, source channel count). Raises :class:`AudioError`."""
    wav, sr = read_audio(path)
    src_channels = wav.shape[0]
    if wav.shape[1] == 0:
        raise AudioError(EMPTY, "file holds 0 audio frames")
    if not np.all(np.isfinite(wav)):
        bad = int(np.size(wav) - np.count_nonzero(np.isfinite(wav)))
        raise AudioError(NON_FINITE, f"{bad} NaN/inf samples")
    wav = convert_channels(wav, channels)
    wav = resample(wav, sr, sample_rate, quality)
    if level.silence_db is not None:
        lvl = rms_db(wav)
        if lvl < level.silence_db:
            raise AudioError(SILENT, f"RMS level {lvl:.1f} dBFS is below {level.silence_db:g} dBFS")
    return apply_level(wav, level), sr, src_channels
