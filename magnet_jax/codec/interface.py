"""What every codec class shares (:class:`~magnet_jax.codec.Encodec`, :class:`~magnet_jax.codec.frame_codec.
FrameCodec`): the rates and codebook counts read from ``config``, the printed form, and the input check."""
from __future__ import annotations

import jax.numpy as jnp


class CodecInterface:
    """Properties of a codec with a ``config`` (sample_rate, frame_rate, hop_length, num_codebooks,
    total_codebooks, bins, channels, name)."""

    sample_rate = property(lambda self: self.config.sample_rate)
    frame_rate = property(lambda self: self.config.frame_rate)
    hop_length = property(lambda self: self.config.hop_length)
    num_codebooks = property(lambda self: self.config.num_codebooks)
    total_codebooks = property(lambda self: self.config.total_codebooks)
    cardinality = property(lambda self: self.config.bins)
    channels = property(lambda self: self.config.channels)

    def __repr__(self):
        c = self.config
        return (f"{type(self).__name__}({c.name}: {c.sample_rate} Hz, {c.channels} ch, hop {c.hop_length}, "
                f"{c.num_codebooks}/{c.total_codebooks} codebooks x {c.bins})")

    def _check_wav(self, wav):
        """``wav [B, C, N]`` (any float) -> float32 ``[B, N, C]``; one-line errors for a wrong shape."""
        wav = jnp.asarray(wav, jnp.float32)
        if wav.ndim != 3:
            raise ValueError(f"expected audio of shape [B, C, N], got {tuple(wav.shape)}")
        if wav.shape[1] != self.channels:
            raise ValueError(f"this codec takes {self.channels}-channel audio, got {wav.shape[1]} channels")
        if wav.shape[2] < 1:
            raise ValueError("empty audio")
        return jnp.transpose(wav, (0, 2, 1))  # NWC
