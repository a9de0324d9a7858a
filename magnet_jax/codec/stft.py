"""Short-time Fourier transforms as reshapes: framing, overlap-add and their window bookkeeping.

``frame`` and ``overlap_add`` are exact inverses in structure (each is the other's transpose) and, when
``n_fft`` is a multiple of ``hop``, are written as a reshape plus ``n_fft // hop`` shifted slices (no gather,
no scatter: cheap gradients on every backend). The codec losses (torchaudio's ``Spectrogram``
conventions) and the frame codec's analysis / synthesis share them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def hann_window(n: int) -> np.ndarray:
    """``torch.hann_window(n)`` (periodic)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def frame(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """``[..., L] -> [..., F, n_fft]``, ``F = 1 + (L - n_fft) // hop`` (frames that fit entirely)."""
    length = x.shape[-1]
    n_frames = 1 + (length - n_fft) // hop
    if n_fft % hop == 0:  # reshape + shifted concatenation: no gather (cheap gradients)
        r = n_fft // hop
        need = (n_frames + r - 1) * hop
        x = x[..., :need] if need <= length else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, need - length)])
        blocks = x.reshape(x.shape[:-1] + (n_frames + r - 1, hop))
        return jnp.concatenate([blocks[..., j:j + n_frames, :] for j in range(r)], axis=-1)
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    return x[..., idx]


def overlap_add(frames: jax.Array, hop: int) -> jax.Array:
    """``[..., F, n_fft] -> [..., (F - 1) * hop + n_fft]``: the sum of the frames placed ``hop`` apart
    (the transpose of :func:`frame`); ``n_fft`` must be a multiple of ``hop``."""
    n_frames, n_fft = frames.shape[-2:]
    if n_fft % hop:
        raise ValueError(f"overlap_add needs n_fft ({n_fft}) to be a multiple of hop ({hop})")
    r = n_fft // hop
    blocks = frames.reshape(frames.shape[:-1] + (r, hop))          # [..., F, r, hop]
    lead = [(0, 0)] * (frames.ndim - 2)
    out = 0.0
    for j in range(r):  # block j of frame t lands at output block t + j
        out = out + jnp.pad(blocks[..., j, :], lead + [(j, r - 1 - j), (0, 0)])
    return out.reshape(frames.shape[:-2] + ((n_frames + r - 1) * hop,))


def analysis(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """"Same"-padded Hann STFT: ``x [..., T * hop] -> complex [..., T, n_fft // 2 + 1]``, one frame per
    ``hop`` samples (zero padding of ``(n_fft - hop) / 2`` on both sides), frame ``t`` centred on
    samples ``[t * hop, (t + 1) * hop)``."""
    pad = (n_fft - hop) // 2
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)])
    return jnp.fft.rfft(frame(x, n_fft, hop) * hann_window(n_fft), axis=-1)


def synthesis(spec: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """Inverse of :func:`analysis`: ``complex [..., T, n_fft // 2 + 1] -> [..., T * hop]`` by windowed
    overlap-add divided by the summed squared window (the least-squares inverse of an STFT)."""
    n_frames = spec.shape[-2]
    win = hann_window(n_fft)
    y = overlap_add(jnp.fft.irfft(spec, n=n_fft, axis=-1) * win, hop)
    env = np.zeros((n_frames - 1) * hop + n_fft, np.float64)   # static: the summed squared window
    for t in range(n_frames):
        env[t * hop:t * hop + n_fft] += win.astype(np.float64) ** 2
    pad = (n_fft - hop) // 2
    env = np.maximum(env, 1e-8)[pad:pad + n_frames * hop]
    return y[..., pad:pad + n_frames * hop] / env.astype(np.float32)
