"""Codec reconstruction metrics: SI-SNR, log-mel L1 distance, chroma similarity, onset-envelope correlation
(reference vs estimate)."""
from __future__ import annotations

import numpy as np


def _pair(ref, est):
    ref, est = np.asarray(ref, np.float64).ravel(), np.asarray(est, np.float64).ravel()
    n = min(len(ref), len(est))
    if n == 0:
        raise ValueError("empty signal: reconstruction metrics need at least one sample")
    return ref[:n], est[:n]


def si_snr(ref, est, eps: float = 1e-8) -> float:
    """Scale-invariant SNR in dB (zero-mean signals, projection of ``est`` onto ``ref``)."""
    ref, est = _pair(ref, est)
    ref, est = ref - ref.mean(), est - est.mean()
    target = (est @ ref) / (ref @ ref + eps) * ref
    noise = est - target
    return float(10 * np.log10((target @ target + eps) / (noise @ noise + eps)))


def log_mel(wav, sr: int, n_mels: int = 64) -> np.ndarray:
    import librosa
    m = librosa.feature.melspectrogram(y=np.asarray(wav, np.float32), sr=sr, n_fft=1024, hop_length=256,
                                       n_mels=n_mels)
    return np.log10(m + 1e-5)


def mel_distance(ref, est, sr: int) -> float:
    """Mean absolute difference of log10-mel spectrograms (64 bands, floor 1e-5)."""
    ref, est = _pair(ref, est)
    return float(np.mean(np.abs(log_mel(ref, sr) - log_mel(est, sr))))


def chroma_similarity(ref, est, sr: int) -> float:
    """Mean per-frame cosine similarity of CQT chroma (1 = same pitch content)."""
    import librosa
    ref, est = _pair(ref, est)
    a = librosa.feature.chroma_cqt(y=ref.astype(np.float32), sr=sr, hop_length=512)
    b = librosa.feature.chroma_cqt(y=est.astype(np.float32), sr=sr, hop_length=512)
    num = (a * b).sum(0)
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-8
    return float(np.mean(num / den))


def onset_correlation(ref, est, sr: int) -> float:
    """Pearson correlation of librosa's onset-strength envelopes (hop 256, what the beat tracker of
    :func:`magnet_jax.eval.mir.estimate_tempo` follows): 1 = every attack where and as strong as in ``ref``.
    The rhythm a round trip keeps, per clip, without the beat tracker's octave and tempo-choice noise."""
    import librosa
    ref, est = _pair(ref, est)
    a = librosa.onset.onset_strength(y=ref.astype(np.float32), sr=sr, hop_length=256)
    b = librosa.onset.onset_strength(y=est.astype(np.float32), sr=sr, hop_length=256)
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def reconstruction_metrics(ref, est, sr: int) -> dict:
    return dict(si_snr=si_snr(ref, est), mel_distance=mel_distance(ref, est, sr),
                chroma_similarity=chroma_similarity(ref, est, sr), onset_correlation=onset_correlation(ref, est, sr))
