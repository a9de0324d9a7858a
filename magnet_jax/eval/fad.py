"""Fréchet audio distance with a pluggable embedding.

An :class:`Embedding` maps a mono clip to frames ``[N, D]``; FAD is the Fréchet distance between Gaussians
fitted to the frames of two sets (Kilgour et al. 2019). Offline embeddings: :class:`MelEmbedding` (log-mel
frames + their deltas) and :class:`CodecEmbedding` (an EnCodec's encoder latents, 50 Hz). Adapters for the
usual learned embeddings, where their weights are available locally: :func:`clap_embedding` (a transformers
``ClapModel`` folder) and :class:`FunctionEmbedding` for anything else (VGGish, PANNs ...: pass the function).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Protocol

import numpy as np


class Embedding(Protocol):
    name: str
    sample_rate: int

    def __call__(self, wav: np.ndarray) -> np.ndarray: ...   # mono [samples] at sample_rate -> [frames, D]


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))`` (scipy ``sqrtm``; imaginary round-off dropped)."""
    from scipy import linalg
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():   # singular product: regularise as the reference FID / FAD code does
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


def gaussian(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames, np.float64)
    if frames.ndim != 2 or frames.shape[0] < 2:
        raise ValueError(f"need at least 2 embedding frames [N, D] to fit a Gaussian, got shape {frames.shape}")
    return frames.mean(0), np.cov(frames, rowvar=False)


def embed_all(embedding: Embedding, clips: Iterable[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(embedding(c), np.float64) for c in clips], axis=0)


def frechet_audio_distance(embedding: Embedding, clips_a: Iterable[np.ndarray], clips_b: Iterable[np.ndarray]) -> float:
    """FAD between two sets of mono clips (both at ``embedding.sample_rate``)."""
    return frechet_distance(*gaussian(embed_all(embedding, clips_a)), *gaussian(embed_all(embedding, clips_b)))


@dataclasses.dataclass
class MelEmbedding:
    """Log-mel frames (64 bands, 32 ms hop) and their deltas: [N, 128]. Offline, no weights."""
    sample_rate: int = 16000
    n_mels: int = 64
    name: str = "mel"

    def __call__(self, wav):
        import librosa
        m = librosa.feature.melspectrogram(y=np.asarray(wav, np.float32), sr=self.sample_rate, n_fft=1024,
                                           hop_length=512, n_mels=self.n_mels)
        logm = np.log(m + 1e-6)
        d = librosa.feature.delta(logm) if logm.shape[1] >= 9 else np.zeros_like(logm)
        return np.concatenate([logm, d]).T


@dataclasses.dataclass
class CodecEmbedding:
    """The encoder latents (before quantization) of an :class:`~magnet_jax.codec.Encodec`: [N, dimension]."""
    codec: object
    name: str = "codec"

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    def __call__(self, wav):
        import jax.numpy as jnp
        x = jnp.asarray(np.asarray(wav, np.float32))[None, :, None]   # [B, samples, channels]: channels-last
        return np.asarray(self.codec.net.encoder(x))[0]                # [frames, dimension]


@dataclasses.dataclass
class FunctionEmbedding:
    """Any embedding given as a function ``wav [samples] -> [frames, D]`` (VGGish, PANNs, ...)."""
    fn: Callable[[np.ndarray], np.ndarray]
    sample_rate: int
    name: str = "custom"

    def __call__(self, wav):
        return np.atleast_2d(np.asarray(self.fn(wav)))


def clap_embedding(folder: str) -> FunctionEmbedding:
    """CLAP audio embeddings (one 512-d vector per 10 s window) from a local transformers ``ClapModel`` folder
    (e.g. ``laion/clap-htsat-unfused`` downloaded elsewhere). Needs torch."""
    import torch
    from transformers import ClapModel, ClapProcessor
    model, proc = ClapModel.from_pretrained(folder).eval(), ClapProcessor.from_pretrained(folder)
    sr = int(proc.feature_extractor.sampling_rate)

    def fn(wav):
        win = 10 * sr
        chunks = [wav[i:i + win] for i in range(0, max(len(wav) - win // 2, 1), win)] or [wav]
        with torch.no_grad():
            inp = proc(audios=[np.asarray(c, np.float32) for c in chunks], sampling_rate=sr, return_tensors="pt")
            return model.get_audio_features(**inp).numpy()
    return FunctionEmbedding(fn, sr, "clap")
