"""MusicGenPipeline: text -> music with the autoregressive MusicGen LM (T5 -> MusicGen decode -> EnCodec).

The sibling of :class:`~magnet_jax.pipelines.magnet.MagnetPipeline` behind the same ``from_pretrained`` (the
checkpoint's ``xp.cfg`` ``lm_model: transformer_lm`` selects it, :mod:`magnet_jax.pipelines.load`); text encoding,
audio I/O, ``generate`` and ``continuation`` are the shared :class:`~magnet_jax.pipelines.base.TextToAudioPipeline`'s,
only the codes generation differs (no infill: MusicGen only continues a prompt).
``MusicGenPipeline.from_config("tiny")``: a random-init MusicGen of the preset's architecture.

Long-form as audiocraft's ``BaseGenModel.generate_tokens``: beyond the window, windows of at most the
window's length, each continuing the last ``window - extend_stride`` seconds (default stride 18 s of a 30 s
window) and adding ``extend_stride`` new seconds.

MusicGen-melody (``facebook/musicgen-melody``): ``generate(texts, melody=wav_or_path, melody_sample_rate=sr)``
or audiocraft's ``generate_with_chroma(descriptions, melody_wavs, melody_sample_rate)``; the melody's chroma
(:mod:`magnet_jax.model.chroma`) is prepended to the LM input. Long-form windows see the melody from their
start time on, wrapped around periodically (as audiocraft). Stereo models decode to ``[B, 2, N]``
(:mod:`magnet_jax.codec.stereo`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.data.audio_io import convert_channels, read_audio, resample
from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.decoding.musicgen import generate as _generate
from magnet_jax.model import chroma as _chroma
from magnet_jax.pipelines.base import TextToAudioPipeline, as_texts
from magnet_jax.util import deadline


@dataclasses.dataclass
class MusicGenPipeline(TextToAudioPipeline):
    generation: MusicGenGenerationConfig = dataclasses.field(default_factory=MusicGenGenerationConfig)

    config_family = "musicgen"

    @classmethod
    def default_generation(cls, kind: str, segment_duration: float) -> MusicGenGenerationConfig:
        return MusicGenGenerationConfig()

    def generate_codes(self, texts: Sequence[str | None] | str | None, *, duration: float | None = None,
                       seed: int = 0, num_samples: int | None = None, prompt=None, extend_stride: float | None = None,
                       long_form: bool = True, progress=None, melody=None, melody_sample_rate: int | None = None,
                       hybrid_prefix_seconds: float | None = None, **overrides) -> jax.Array:
        """Codes int32 [B, K, T] for ``duration`` seconds (default: the window); ``prompt`` codes [B or 1, K, P]
        are continued (and kept at the start). Generation parameters as :class:`MusicGenGenerationConfig`.
        ``melody`` (MusicGen-melody): a path, an array [N] / [C, N] / [B, C, N] at ``melody_sample_rate``
        (default: the model's), or a list of those / None, one per text."""
        if hybrid_prefix_seconds is not None:
            raise ValueError("hybrid_prefix_seconds applies to a MAGNeT pipeline with rescorer=MUSICGEN; "
                             "a MusicGen writes the whole clip itself")
        cfg = self._config({**overrides, **({"extend_stride": extend_stride} if extend_stride else {})})
        texts = as_texts(texts)
        total = self.check_duration(self.window_seconds if duration is None else duration)
        hidden, mask, B, prompt = self.condition(texts, num_samples, prompt)
        melodies = self._melodies(melody, melody_sample_rate, B)
        if prompt is not None and prompt.shape[-1] >= total:
            raise ValueError(f"the prompt ({prompt.shape[-1]} frames) is not shorter than the output ({total})")
        key = jax.random.key(seed)
        window = self.lm.config.segment_frames

        def run(n, rng, prompt, offset=None):   # offset: seconds into the melody (long-form windows)
            chroma = self.melody_chroma(melodies, offset)
            deadline.check()    # a per-request time limit (the web app), checked before each LM call
            return _generate(self.lm, hidden, mask, config=cfg, rng=rng, num_frames=n, prompt=prompt, chroma=chroma)
        if total <= window:
            return run(total, key, prompt)
        if not long_form:
            raise ValueError(f"duration {total / self.frame_rate:g} s is beyond the model's {self.window_seconds:g} s "
                             "window; enable long-form generation")
        stride = int(self.frame_rate * cfg.extend_stride)
        if not 0 < stride < window:
            raise ValueError(f"extend_stride must be in (0, {self.window_seconds:g}) seconds, got {cfg.extend_stride}")
        pieces, offset, i = ([] if prompt is None else [prompt]), 0, 0
        plen = 0 if prompt is None else prompt.shape[-1]
        while offset + plen < total:   # audiocraft BaseGenModel.generate_tokens, in frames
            n = min(total - offset, window)
            out = run(n, jax.random.fold_in(key, i), prompt, offset / self.frame_rate)
            pieces.append(out if prompt is None else out[..., prompt.shape[-1]:])
            prompt = out[..., stride:]
            plen, offset, i = prompt.shape[-1], offset + stride, i + 1
        return jnp.concatenate(pieces, axis=-1)[..., :total]

    # ------------------------------------------------------------------ melody (MusicGen-melody)
    @property
    def has_melody(self) -> bool:
        return getattr(self.lm.config, "n_chroma", 0) > 0

    def _melodies(self, melody, sample_rate, batch: int):
        """``melody`` -> list of ``batch`` mono float32 [N] at the chroma's sample rate (or None), or None."""
        if melody is None:
            return None
        if not self.has_melody:
            raise ValueError(f"{self.name or 'this model'} has no melody conditioner: load facebook/musicgen-melody")
        if isinstance(melody, np.ndarray) and melody.ndim == 3 or isinstance(melody, (list, tuple)):
            items = list(melody)
        else:
            items = [melody]
        if len(items) == 1 and batch > 1:
            items = items * batch
        if len(items) != batch:
            raise ValueError(f"{len(items)} melodies for {batch} descriptions: give one, or one per description")
        out, sr_out = [], self.lm.config.chroma_sample_rate
        for m in items:
            if m is None:
                out.append(None)
                continue
            if isinstance(m, (str, os.PathLike)):
                wav, sr = read_audio(m)
            else:
                wav, sr = np.asarray(m, np.float32), int(sample_rate or self.sample_rate)
            wav = wav[None] if wav.ndim == 1 else wav
            if wav.ndim != 2 or wav.shape[-1] == 0 or not np.all(np.isfinite(wav)):
                raise ValueError(f"a melody must be finite audio [N] or [C, N] with N > 0, got shape {wav.shape}")
            out.append(resample(convert_channels(wav, 1), sr, sr_out)[0])
        return out if any(m is not None for m in out) else None

    def melody_chroma(self, melodies, offset: float | None = None):
        """float32 [B, Tc, n_chroma] (None rows: the null chroma) from :meth:`_melodies`' list; ``offset``
        (seconds): the window of ``segment_duration`` starting there, wrapped periodically (long-form)."""
        if melodies is None:
            return None
        c = self.lm.config
        sr = c.chroma_sample_rate
        rows = []
        for m in melodies:
            if m is not None and offset is not None:
                start = int(offset * sr)
                m = m[np.arange(start, start + int(c.segment_duration * sr)) % len(m)]
            rows.append(m)
        real = [m for m in rows if m is not None]
        N = max(len(m) for m in real)
        wavs = _chroma.melody_stems(np.stack([np.pad(m, (0, N - len(m))) for m in real]), sr)
        feats = _chroma.match_length(_chroma.extract_chroma(wavs, sr, n_chroma=c.n_chroma,
                                                            radix2_exp=c.chroma_radix2_exp, argmax=c.chroma_argmax),
                                     c.chroma_frames)
        null, it = self.lm.null_chroma(1)[0], iter(range(len(real)))
        return jnp.stack([null if m is None else feats[next(it)] for m in rows])

    def generate_with_chroma(self, descriptions, melody_wavs, melody_sample_rate: int, progress: bool = False,
                             return_tokens: bool = False, *, duration: float | None = None, seed: int = 0, **kw):
        """audiocraft's ``MusicGen.generate_with_chroma``: waveforms [B, C, N] (+ the codes with ``return_tokens``)."""
        codes = self.generate_codes(descriptions, duration=duration, seed=seed, melody=melody_wavs,
                                    melody_sample_rate=melody_sample_rate, progress=progress, **kw)
        wav = self._audio(codes, duration)
        return (wav, np.asarray(codes)) if return_tokens else wav
