"""The request checks and the clip writing that the two front ends share: the CLI job
(:mod:`magnet_jax.jobs.generate`, ``tools/generate.py``) and the web page (:mod:`magnet_jax.jobs.app`).

Every check raises the project's one user-error type, :class:`~magnet_jax.util.user_input.UserError` (one line:
what is wrong and what to do), before any generation starts. The front ends name an input their own way (the CLI
``--prompt_wav='a.wav'``, the page "the audio prompt (a.wav)"): that name is the ``label`` argument.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from magnet_jax.util import user_input
from magnet_jax.util.user_input import UserError

AUDIO_FORMATS = "give a WAV / FLAC / OGG / MP3 file"


# ---------------------------------------------------------------------------------- text
def text_lines(body: str | None) -> list[str]:
    """One description per line: stripped, blank lines dropped (a text file, the page's text box)."""
    return [t.strip() for t in (body or "").splitlines() if t.strip()]


# ---------------------------------------------------------------------------------- duration
def duration(label: str, value) -> float | None:
    """A clip length: None (the model's default) or a finite number of seconds > 0."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{label}={value!r} must be a number of seconds") from None
    if not math.isfinite(v) or v <= 0:
        raise UserError(f"{label}={v:g} must be a positive number of seconds")
    return v


# ---------------------------------------------------------------------------------- audio inputs
def read_audio_input(path: str | None, label: str) -> tuple[np.ndarray, int] | None:
    """A user's audio file (a prompt to continue, a clip to infill, a melody) -> (float32 ``[C, N]``, sample
    rate); None when no ``path`` is given. An unreadable, empty or non-finite file is a :class:`UserError`."""
    if not path:
        return None
    from magnet_jax.data.audio_io import read_audio
    try:
        wav, sr = read_audio(path)
    except Exception as e:  # noqa: BLE001 - AudioError, or any decoder failure: the same user error
        raise UserError(f"{label}: {user_input.one_line(e)} ({AUDIO_FORMATS})") from None
    wav = np.asarray(wav, np.float32)
    if wav.size == 0 or not np.all(np.isfinite(wav)):
        raise UserError(f"{label} is empty or holds NaN / inf samples")
    return wav, int(sr)


def check_prompt(audio: tuple[np.ndarray, int], seconds: float | None) -> None:
    """A continuation's prompt must be shorter than the clip asked for (``seconds``; None: not checked here)."""
    wav, sr = audio
    if seconds is not None and wav.shape[-1] / sr >= seconds:
        raise UserError(f"the audio prompt ({wav.shape[-1] / sr:.1f} s) must be shorter than the duration "
                        f"({seconds:g} s)")


def check_infill(audio: tuple[np.ndarray, int], start, end, window_seconds: float) -> tuple[float, float]:
    """The infill region ``[start, end)`` s inside the clip, and the clip within one model window; returns
    ``(start, end)`` as floats."""
    wav, sr = audio
    clip = wav.shape[-1] / sr
    if start is None or end is None:
        raise UserError("set the infill start and end (seconds) of the clip")
    start, end = float(start), float(end)
    if not 0 <= start < end <= clip:
        raise UserError(f"the infill region [{start:g}, {end:g}) s is outside the {clip:.2f} s clip")
    if clip > window_seconds:
        raise UserError(f"infill works within one window: the clip is {clip:.1f} s, the model's window is "
                        f"{window_seconds:g} s (trim it)")
    return start, end


# ---------------------------------------------------------------------------------- clip writing
def write_clip(wav_path: str | Path, wav: np.ndarray, sample_rate: int, title: str = "", *,
               spectrogram: str | Path | None = None, waveform: str | Path | None = None) -> dict:
    """Writes one clip: the 16-bit WAV, and its spectrogram / waveform PNGs when their paths are given.

    Returns ``{"wav": path, "png": spectrogram path, "waveform": waveform path, "seconds": length}`` (only the
    files written)."""
    from magnet_jax.audio_files import save_spectrogram, save_waveform, write_wav
    out = {"wav": str(write_wav(wav_path, wav, sample_rate))}
    if spectrogram is not None:
        out["png"] = str(save_spectrogram(spectrogram, wav, sample_rate, title))
    if waveform is not None:
        out["waveform"] = str(save_waveform(waveform, wav, sample_rate, title))
    out["seconds"] = np.shape(wav)[-1] / sample_rate
    return out
