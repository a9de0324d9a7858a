"""Reconstruction losses and metrics of audiocraft's CompressionSolver, in JAX.

* :func:`l1_loss` -- ``torch.nn.L1Loss`` on the waveform (mean absolute error).
* :func:`msspec_loss` -- ``audiocraft.losses.MultiScaleMelSpectrogramLoss`` ("msspec"): for each
  scale ``n_fft = 2**i``, ``i in [range_start, range_end)``, hop ``n_fft // 4``, the L1 distance of
  the linear mel spectrograms plus ``alpha_i`` times the MSE of the log10 (``floor + mel``) ones;
  divided by ``sum(alpha_i + 1)`` when ``normalized`` (which also window-normalises the STFT).
* :func:`mrstft_loss` -- multi-resolution linear STFT loss (spectral convergence + log magnitude).
* :func:`mel_loss` -- ``MelSpectrogramL1Loss`` ("mel"), the solver's mel distance metric.
* :func:`sisnr` -- ``audiocraft.losses.SISNR`` (returned as the SI-SNR in dB, higher is better;
  audiocraft's module returns its negative).

Spectrograms follow ``MelSpectrogramWrapper`` exactly: reflect padding of ``(n_fft - hop) // 2``
on both sides, zero padding on the right so the last frame is full (``pad_for_conv1d``), a
non-centred periodic-Hann STFT (torchaudio ``Spectrogram(center=False)``), power 2, an HTK mel
filterbank without normalisation (torchaudio ``melscale_fbanks``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.codec.stft import frame, hann_window


# --------------------------------------------------------------------------- STFT
def stft(x: jax.Array, n_fft: int, hop: int, normalized: bool = False) -> jax.Array:
    """torchaudio ``Spectrogram(n_fft, hop, win_length=n_fft, hann, center=False, power=None)``:
    complex ``[..., n_fft // 2 + 1, F]``; ``normalized`` divides by ``sqrt(sum(window**2))``."""
    win = hann_window(n_fft)
    spec = jnp.fft.rfft(frame(x, n_fft, hop) * win, axis=-1)
    if normalized:
        spec = spec / np.float32(np.sqrt(np.sum(win.astype(np.float64) ** 2)))
    return jnp.swapaxes(spec, -1, -2)


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> np.ndarray:
    """torchaudio ``melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sr, norm=None, 'htk')``:
    ``[n_freqs, n_mels]`` float32."""
    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    all_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    m_pts = np.linspace(_hz_to_mel(float(f_min)), _hz_to_mel(f_max), n_mels + 2)
    f_pts = _mel_to_hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


@dataclass(frozen=True)
class MelSpec:
    """audiocraft ``MelSpectrogramWrapper``: ``[B, C, N] -> [B, C * n_mels, frames]``."""
    n_fft: int
    hop_length: int
    n_mels: int
    sample_rate: int
    f_min: float = 0.0
    f_max: float | None = None
    log: bool = True
    normalized: bool = False
    floor_level: float = 1e-5

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 2:
            x = x[:, None]
        n_fft, hop = self.n_fft, int(self.hop_length)
        p = (n_fft - hop) // 2
        x = jnp.pad(x, ((0, 0), (0, 0), (p, p)), mode="reflect")
        length = x.shape[-1]
        n_frames = (length - n_fft) / hop + 1
        extra = (math.ceil(n_frames) - 1) * hop + n_fft - length   # pad_for_conv1d
        x = jnp.pad(x, ((0, 0), (0, 0), (0, extra)))
        spec = stft(x, n_fft, hop, self.normalized)
        power = jnp.square(spec.real) + jnp.square(spec.imag)       # [B, C, freqs, frames]
        fb = mel_filterbank(n_fft, self.n_mels, self.sample_rate, self.f_min, self.f_max)
        mel = jnp.einsum("bcft,fm->bcmt", power, fb, precision=jax.lax.Precision.HIGHEST)
        if self.log:
            mel = jnp.log10(self.floor_level + mel)
        B, C, M, T = mel.shape
        return mel.reshape(B, C * M, T)


def l1_loss(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(x - y))


def mse_loss(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(x - y))


def msspec_loss(x: jax.Array, y: jax.Array, *, sample_rate: int, range_start: int = 6, range_end: int = 11,
                n_mels: int = 64, f_min: float = 0.0, f_max: float | None = None, normalized: bool = False,
                alphas: bool = True, floor_level: float = 1e-5) -> jax.Array:
    """``MultiScaleMelSpectrogramLoss(x, y)`` (see module docstring); defaults are the class's,
    the solver's config is :func:`magnet_jax.codec_training.config` ``msspec``."""
    loss, total = 0.0, 0.0
    for i in range(range_start, range_end):
        kw = dict(n_fft=2 ** i, hop_length=int(2 ** i / 4), n_mels=n_mels, sample_rate=sample_rate, f_min=f_min,
                  f_max=f_max, normalized=normalized, floor_level=floor_level)
        alpha = float(np.sqrt(2 ** i - 1)) if alphas else 1.0
        lin, lg = MelSpec(log=False, **kw), MelSpec(log=True, **kw)
        loss = loss + l1_loss(lin(x), lin(y)) + alpha * mse_loss(lg(x), lg(y))
        total += alpha + 1
    return loss / total if normalized else loss


def mrstft_loss(x: jax.Array, y: jax.Array, *, n_ffts=(2048, 1024, 512, 256, 128), floor: float = 1e-5
                ) -> jax.Array:
    """Multi-resolution linear STFT loss (Yamamoto et al., Parallel WaveGAN): for each ``n_fft`` (hop
    ``n_fft // 4``, Hann), the spectral convergence ``||S_y - S_x||_F / ||S_y||_F`` plus the mean L1
    distance of the log magnitudes (floored at ``floor``), averaged over the resolutions. Linear bins
    resolve the partials of a note (2048 at 16 kHz: 7.8 Hz) where a 64-band mel cannot."""
    total = 0.0
    for n_fft in n_ffts:
        def mag(a):
            s = stft(a, n_fft, n_fft // 4)
            return jnp.sqrt(jnp.square(s.real) + jnp.square(s.imag) + floor ** 2)
        sx, sy = mag(x), mag(y)
        sc = jnp.sqrt(jnp.sum(jnp.square(sy - sx))) / (jnp.sqrt(jnp.sum(jnp.square(sy))) + 1e-7)
        total = total + sc + jnp.mean(jnp.abs(jnp.log(sx) - jnp.log(sy)))
    return total / len(n_ffts)


def mel_loss(x: jax.Array, y: jax.Array, *, sample_rate: int, n_fft: int = 1024, hop_length: int = 256,
             n_mels: int = 80, f_min: float = 0.0, f_max: float | None = None, log: bool = True,
             normalized: bool = False, floor_level: float = 1e-5) -> jax.Array:
    """``MelSpectrogramL1Loss(x, y)`` (win_length = n_fft)."""
    m = MelSpec(n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, sample_rate=sample_rate, f_min=f_min,
                f_max=f_max, log=log, normalized=normalized, floor_level=floor_level)
    return l1_loss(m(x), m(y))


def sisnr(estimate: jax.Array, reference: jax.Array, *, sample_rate: int, segment: float | None = 20.0,
          overlap: float = 0.5, epsilon: float = float(np.finfo(np.float32).eps)) -> jax.Array:
    """Mean SI-SNR in dB over ``[B, C, T]`` chunks (``-1 *`` audiocraft ``SISNR``)."""
    T = reference.shape[-1]
    if segment is None:
        size, stride = T, T
    else:
        size = int(segment * sample_rate)
        stride = int(size * (1 - overlap))
    eps = epsilon * size
    n_frames = math.ceil(T / stride)
    pad = (n_frames - 1) * stride + size - T

    def unfold(a):
        a = jnp.pad(a, ((0, 0), (0, 0), (0, pad)))
        idx = np.arange(n_frames)[:, None] * stride + np.arange(size)[None, :]
        return a[..., idx]
    gt, est = unfold(reference), unfold(estimate)
    gt = gt - gt.mean(-1, keepdims=True)
    est = est - est.mean(-1, keepdims=True)
    dot = jnp.sum(gt * est, -1, keepdims=True)
    norm2 = lambda a: jnp.sum(jnp.square(a), -1, keepdims=True)  # noqa: E731
    proj = dot * gt / (eps + norm2(gt))
    noise = est - proj
    value = 10 * (jnp.log10(eps + norm2(proj)) - jnp.log10(eps + norm2(noise)))
    return value[..., 0].mean()
