"""The stereo MusicGen codec: audiocraft ``InterleaveStereoCompressionModel`` (``per_timestep=False``).

The released stereo LMs (``facebook/musicgen-stereo-*``, 8 codebooks, delays ``[0, 0, 1, 1, 2, 2, 3, 3]``) run
the mono 32 kHz EnCodec on each channel and interleave the codebooks: ``codes[:, 2k + c]`` is codebook ``k`` of
channel ``c`` (0 = left, 1 = right). ``decode`` splits them back and returns ``[B, 2, N]``.
"""
from __future__ import annotations

import jax.numpy as jnp


class StereoCodec:
    """Wraps a mono codec (``magnet_jax.codec.Encodec``); unknown attributes are the mono codec's."""

    def __init__(self, mono):
        if mono.channels != 1:
            raise ValueError(f"the stereo interleaving wraps a mono codec, got {mono.channels} channels")
        self.mono = mono

    channels = 2

    @property
    def num_codebooks(self) -> int:
        return 2 * self.mono.num_codebooks

    def __getattr__(self, name):
        if name == "mono":
            raise AttributeError(name)
        return getattr(self.mono, name)

    def encode(self, wav, **kw):
        """float [B, 2, N] -> codes int32 [B, 2K, T] (``rearrange('c b k t -> b (k c) t')``)."""
        wav = jnp.asarray(wav)
        if wav.ndim != 3 or wav.shape[1] != 2:
            raise ValueError(f"the stereo codec takes audio [B, 2, N], got shape {wav.shape}")
        left, right = self.mono.encode(wav[:, :1], **kw), self.mono.encode(wav[:, 1:], **kw)
        B, K, T = left.shape
        return jnp.stack([left, right], axis=2).reshape(B, 2 * K, T)

    def left_right(self, codes):
        """codes [B, 2K, T] -> (left [B, K, T], right [B, K, T])."""
        codes = jnp.asarray(codes)
        if codes.ndim != 3 or codes.shape[1] != self.num_codebooks:
            raise ValueError(f"stereo codes must be [B, {self.num_codebooks}, T], got shape {codes.shape}")
        return codes[:, 0::2], codes[:, 1::2]

    def decode(self, codes, scale=None, **kw):
        """codes [B, 2K, T] -> audio float32 [B, 2, N] (each channel decoded by the mono codec)."""
        left, right = self.left_right(codes)
        return jnp.concatenate([self.mono.decode(left, **kw), self.mono.decode(right, **kw)], axis=1)
