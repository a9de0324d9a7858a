"""MusicGen-melody's chroma features (audiocraft ``ChromaExtractor`` + ``ChromaStemConditioner`` inference path).

    wav [B, N] at sample_rate -> |STFT|^2 (hann, n_fft = 2**radix2_exp, hop n_fft/4, centred, reflect,
    normalised by sqrt(sum window^2)) -> chroma filterbank (librosa ``filters.chroma(tuning=0)``, ported)
    -> inf-norm over the chroma bins (eps 1e-6) -> argmax one-hot (``argmax: true``, every release)
    -> [B, Tc, n_chroma], then truncated / repeated to the training length (``match_len_on_eval``).

The chroma runs at its own frame rate (sample_rate / hop, 7.8 Hz for 32 kHz and radix2_exp 14) and is
*prepended* to the LM input as is: audiocraft does not resample it to the token frame rate.

Stems: audiocraft first removes drums and bass with demucs ``htdemucs`` (keeps vocals + other). magnet-jax
does that too when ``demucs`` is installed (torch, :func:`melody_stems`); otherwise the chroma is computed on the
full mix (a one-line warning), so drums / bass can move the per-frame argmax.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger("magnet_jax.model.chroma")


@functools.lru_cache(maxsize=8)
def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int = 12) -> np.ndarray:
    """float32 [n_chroma, n_fft // 2 + 1]: ``librosa.filters.chroma(sr, n_fft, tuning=0, n_chroma)``
    (ctroct 5, octwidth 2, column L2 norm, base C)."""
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (440.0 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidth = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    D = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    D = np.remainder(D + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * D / np.tile(binwidth, (n_chroma, 1))) ** 2)
    norm = np.sqrt(np.sum(wts ** 2, axis=0, keepdims=True))
    wts = wts / np.where(norm < np.finfo(wts.dtype).tiny, 1.0, norm)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2.0) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)


def power_spectrogram(wav, n_fft: int, hop: int):
    """torchaudio ``Spectrogram(n_fft, hop_length=hop, power=2, center=True, normalized=True)``:
    float32 [B, frames, n_fft // 2 + 1] of ``wav [B, N]`` (N >= n_fft // 2 + 1)."""
    wav = jnp.asarray(wav, jnp.float32)
    x = jnp.pad(wav, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = 1 + (x.shape[-1] - n_fft) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)            # periodic hann
    spec = jnp.fft.rfft(x[:, idx] * jnp.asarray(window, jnp.float32), axis=-1)
    return (jnp.abs(spec) ** 2 / np.float32(np.sum(window ** 2))).astype(jnp.float32)


def extract_chroma(wav, sample_rate: int, *, n_chroma: int = 12, radix2_exp: int = 14, argmax: bool = True):
    """audiocraft ``ChromaExtractor.forward``: float32 [B, Tc, n_chroma] of mono ``wav [B, N]``."""
    n_fft = 2 ** radix2_exp
    wav = jnp.asarray(wav, jnp.float32)
    if wav.shape[-1] < n_fft:       # as the reference: symmetric zero padding up to one window
        pad = n_fft - wav.shape[-1]
        wav = jnp.pad(wav, ((0, 0), (pad // 2, pad // 2 + pad % 2)))
    spec = power_spectrogram(wav, n_fft, n_fft // 4)
    raw = jnp.einsum("btf,cf->btc", spec, jnp.asarray(chroma_filterbank(sample_rate, n_fft, n_chroma)),
                     precision=jax.lax.Precision.HIGHEST)
    norm = raw / jnp.maximum(jnp.max(jnp.abs(raw), axis=-1, keepdims=True), 1e-6)
    if argmax:                      # first maximum on ties, as torch
        norm = jax.nn.one_hot(jnp.argmax(norm, axis=-1), n_chroma, dtype=jnp.float32)
    return norm


def chroma_length(sample_rate: int, duration: float, radix2_exp: int = 14) -> int:
    """Frames of the chroma of ``duration`` seconds (the conditioner's ``chroma_len``; 235 for 30 s)."""
    n_fft = 2 ** radix2_exp
    n = max(int(sample_rate * duration), n_fft)
    return 1 + n // (n_fft // 4)


def match_length(chroma, length: int):
    """``match_len_on_eval``: truncate, or repeat the whole chroma (tiling) and truncate, to ``length`` frames."""
    T = chroma.shape[1]
    if T < length:
        chroma = jnp.tile(chroma, (1, int(math.ceil(length / T)), 1))
    return chroma[:, :length]


def null_chroma(batch: int, length: int, n_chroma: int = 12, argmax: bool = True):
    """The chroma of a silent (nullified, CFG) melody: all zeros, i.e. one-hot bin 0 with argmax."""
    z = jnp.zeros((batch, length, n_chroma), jnp.float32)
    return z.at[:, :, 0].set(1.0) if argmax else z


_warned = []


def melody_stems(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """audiocraft ``_get_stemmed_wav``: demucs ``htdemucs`` vocals + other, mono at ``sample_rate``, for
    ``wav [B, N]``. Without demucs installed: ``wav`` unchanged (the full mix), with a one-line warning."""
    try:
        spec = importlib.util.find_spec("demucs")
    except ValueError:                                   # a module object without a spec
        spec = None
    model = None
    if spec is not None and spec.origin is not None:     # a real installation (not a placeholder module)
        try:
            from demucs.pretrained import get_model
            model = get_model("htdemucs")
        except Exception as e:  # noqa: BLE001  (weights not downloadable offline, a broken install, ...)
            reason = f"demucs could not load htdemucs ({type(e).__name__}: {e})"
    else:
        reason = "demucs is not installed"
    if model is None:
        if reason not in _warned:
            _warned.append(reason)
            log.warning("%s: the melody chroma is computed on the full mix (audiocraft removes drums and bass with "
                        "htdemucs first; pip install demucs for that)", reason)
        return np.asarray(wav, np.float32)
    import torch  # function-level: optional heavy dependency (demucs runs on torch)
    from demucs.apply import apply_model
    from demucs.audio import convert_audio
    x = convert_audio(torch.from_numpy(np.asarray(wav, np.float32))[:, None], sample_rate, model.samplerate,
                      model.audio_channels)
    with torch.no_grad():
        stems = apply_model(model, x, device="cpu")
    idx = [model.sources.index("vocals"), model.sources.index("other")]
    mix = convert_audio(stems[:, idx].sum(1), model.samplerate, sample_rate, 1)
    return mix[:, 0].numpy().astype(np.float32)
