"""Writing generated audio: WAV files (soundfile), spectrogram and waveform PNGs (matplotlib, Agg backend)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def safe_stem(text: str, index: int, seed: int | None = None, max_len: int = 48) -> str:
    """``NNN_slug[_seedS]``: the clip's index in its run, its text, and the run's seed (so runs with other
    seeds never collide; the same command run twice gives the same names)."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "_", (text or "unconditional")).strip("_").lower()[:max_len] or "clip"
    return f"{index:03d}_{slug}" + ("" if seed is None else f"_seed{seed}")


class NonFiniteAudioError(ValueError):
    """Generated audio holds NaN / inf samples."""


def check_finite(wav: np.ndarray, what: object = "audio") -> None:
    bad = int(np.size(wav) - np.count_nonzero(np.isfinite(wav)))
    if bad:
        raise NonFiniteAudioError(f"{what}: {bad} of {np.size(wav)} samples are NaN or inf; nothing written "
                                  f"(check the generation knobs and the model weights)")


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int) -> Path:
    """``wav`` float [C, N] -> 16-bit PCM WAV (clipped to [-1, 1]). Non-finite audio is refused (a NaN
    would be written as a full-scale sample), so a broken generation never leaves a plausible-looking file."""
    import soundfile as sf
    path = Path(path)
    data = np.asarray(wav, np.float32)
    check_finite(data, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(data, -1.0, 1.0).T
    sf.write(str(path), data, int(sample_rate), subtype="PCM_16")
    return path


def spectrogram_db(wav: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Log-magnitude STFT (dB) of a mono mix: [freq, time]."""
    x = np.asarray(wav, np.float32).reshape(-1, np.shape(wav)[-1]).mean(0)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=-1)).T
    return 20 * np.log10(np.maximum(mag, 1e-5))


def save_spectrogram(path: str | Path, wav: np.ndarray, sample_rate: int, title: str = "") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s = spectrogram_db(wav)
    dur = np.shape(wav)[-1] / sample_rate
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    im = ax.imshow(s, origin="lower", aspect="auto", cmap="magma", extent=(0, dur, 0, sample_rate / 2000),
                   vmin=s.max() - 80, vmax=s.max())
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    ax.set_title(title[:90])
    fig.colorbar(im, ax=ax, label="dB")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_waveform(path: str | Path, wav: np.ndarray, sample_rate: int, title: str = "") -> Path:
    """The samples over time, one line per channel, on [-1, 1]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(wav, np.float32).reshape(-1, np.shape(wav)[-1])
    t = np.arange(x.shape[-1]) / sample_rate
    fig, ax = plt.subplots(figsize=(8, 1.8), dpi=100)
    for ch in x:
        ax.plot(t, ch, linewidth=0.4)
    ax.set_xlim(0, t[-1] if t.size else 1)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("time (s)")
    ax.set_title(title[:90])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
