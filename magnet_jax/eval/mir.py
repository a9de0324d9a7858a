"""MIR measurements of a clip with librosa: key and mode (chroma + Krumhansl-Kessler profiles), tempo (beat
tracking), MFCC statistics (the instrument classifier's features)."""
from __future__ import annotations

import numpy as np

PITCHES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_ALIASES = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}
# Krumhansl & Kessler (1982) probe-tone profiles, tonic first
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def pitch_class(name: str) -> int:
    """``"F#"`` / ``"Gb"`` / ``"f-"`` (music21's flat) -> 0..11."""
    n = name.strip().replace("-", "b")
    n = n[:1].upper() + n[1:]
    n = _ALIASES.get(n, n)
    if n not in PITCHES:
        raise ValueError(f"unknown key name {name!r}: use a pitch name such as C, F#, Bb")
    return PITCHES.index(n)


def chroma(wav: np.ndarray, sr: int) -> np.ndarray:
    """Mean CQT chroma of a mono clip, float [12] (C first)."""
    import librosa
    c = librosa.feature.chroma_cqt(y=np.asarray(wav, np.float32), sr=sr, hop_length=512)
    return c.mean(axis=1)


def key_scores(chroma_vec: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``chroma_vec`` with the 24 rotated profiles: [2, 12] (major row, minor row)."""
    out = np.zeros((2, 12))
    for m, prof in enumerate((MAJOR_PROFILE, MINOR_PROFILE)):
        for t in range(12):
            out[m, t] = np.corrcoef(chroma_vec, np.roll(prof, t))[0, 1]
    return np.nan_to_num(out, nan=-1.0)


def estimate_key(wav: np.ndarray, sr: int) -> tuple[str, str, float]:
    """(tonic, "major" | "minor", correlation) of the best-matching Krumhansl key profile."""
    s = key_scores(chroma(wav, sr))
    m, t = np.unravel_index(int(np.argmax(s)), s.shape)
    return PITCHES[t], ("major", "minor")[m], float(s[m, t])


def estimate_tempo(wav: np.ndarray, sr: int) -> float:
    """Tempo in bpm from librosa's onset-envelope beat tracker (0.0 for a clip with no onsets)."""
    import librosa
    y = np.asarray(wav, np.float32)
    if not np.any(y):
        return 0.0
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr, hop_length=256)
    return float(np.atleast_1d(tempo)[0])


def tempo_close(estimate: float, target: float, tol: float = 0.08) -> bool:
    """Within ``tol`` of the target, allowing the beat tracker's octave errors (x2, x1/2) as MIREX ``Acc2``."""
    return any(abs(estimate - target * f) <= tol * target * f for f in (1.0, 2.0, 0.5)) if target > 0 else False


def mfcc_stats(wav: np.ndarray, sr: int, n_mfcc: int = 20) -> np.ndarray:
    """Timbre features: mean and std of MFCCs, their deltas, spectral centroid / bandwidth / flatness: [4 n + 6]."""
    import librosa
    y = np.asarray(wav, np.float32)
    m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc)
    d = librosa.feature.delta(m) if m.shape[1] >= 9 else np.zeros_like(m)
    extra = np.stack([np.log1p(librosa.feature.spectral_centroid(y=y, sr=sr)[0]),
                      np.log1p(librosa.feature.spectral_bandwidth(y=y, sr=sr)[0]),
                      np.log(librosa.feature.spectral_flatness(y=y)[0] + 1e-8)])
    return np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1), extra.mean(1), extra.std(1)]).astype(np.float32)
