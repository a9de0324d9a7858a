"""audiocraft's ``MultiScaleSTFTDiscriminator`` (MS-STFT) in Flax NNX.

Per scale (``DiscriminatorSTFT``): a complex STFT (periodic Hann, ``center=False``, window-normalised
when ``normalized``), real and imaginary parts stacked as ``2 * C`` channels over a (time, freq)
image, then ``Conv2d(2C -> F, (3, 9))`` (no weight norm, as audiocraft's first ``NormConv2d``
defaults to ``norm='none'``), one ``(3, 9)`` conv per dilation with stride ``(1, 2)`` and time
dilation ``d``, a ``(3, 3)`` conv, each followed by LeakyReLU (its output is a feature map), and a
``(3, 3)`` ``conv_post`` to ``out_channels`` logits. Convs after the first are weight-normalised
(``w = g * v / ||v||``, the norm over every axis but the output channel; ``g`` and ``v`` are the
trainable parameters). Padding is ``((k - 1) * dilation) // 2`` on both sides of each axis.

Layout: NHWC = ``[B, time, freq, channels]``; weights HWIO. Returns ``(logits, fmaps)``: a list of
``[B, T', F', out_channels]`` per scale and a list (per scale) of feature maps.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.codec_training.losses import stft
from magnet_jax.util.params import param


def _uniform(rng, shape, bound):
    return jax.random.uniform(rng, shape, jnp.float32, -bound, bound)


class WNConv2d(nnx.Module):
    """Conv2d with optional weight norm; torch's default init (kaiming-uniform a=sqrt(5) and bias
    U(+-1/sqrt(fan_in))), ``g`` initialised to ``||v||`` as ``torch.nn.utils.weight_norm`` does."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], *, stride=(1, 1), dilation=(1, 1),
                 weight_norm: bool = True, rngs: nnx.Rngs):
        kh, kw = kernel
        self.stride, self.dilation, self.weight_norm = tuple(stride), tuple(dilation), weight_norm
        self.padding = (((kh - 1) * dilation[0]) // 2, ((kw - 1) * dilation[1]) // 2)
        bound = 1.0 / np.sqrt(cin * kh * kw)
        w = _uniform(rngs.params(), (kh, kw, cin, cout), bound)
        if weight_norm:
            self.v = param(w)
            self.g = param(jnp.sqrt(jnp.sum(jnp.square(w), axis=(0, 1, 2))))
        else:
            self.w = param(w)
        self.bias = param(_uniform(rngs.params(), (cout,), bound))

    def kernel(self) -> jax.Array:
        if not self.weight_norm:
            return self.w[...]
        v = self.v[...]
        return v * (self.g[...] / jnp.sqrt(jnp.sum(jnp.square(v), axis=(0, 1, 2))))

    def __call__(self, x):
        ph, pw = self.padding
        y = jax.lax.conv_general_dilated(x, self.kernel(), self.stride, ((ph, ph), (pw, pw)),
                                         rhs_dilation=self.dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=jax.lax.Precision.HIGHEST)
        return y + self.bias[...]


class DiscriminatorSTFT(nnx.Module):
    def __init__(self, filters: int, *, in_channels: int = 1, out_channels: int = 1, n_fft: int = 1024,
                 hop_length: int = 256, win_length: int = 1024, max_filters: int = 1024, filters_scale: int = 1,
                 kernel_size=(3, 9), dilations: Sequence[int] = (1, 2, 4), stride=(1, 2), normalized: bool = True,
                 norm: str = "weight_norm", negative_slope: float = 0.2, rngs: nnx.Rngs):
        if win_length != n_fft:
            raise ValueError(f"win_length={win_length} != n_fft={n_fft}: only full-length windows are supported")
        if norm not in ("weight_norm", "none"):
            raise ValueError(f"discriminator norm {norm!r} is not supported (weight_norm or none)")
        self.n_fft, self.hop_length, self.normalized = n_fft, hop_length, normalized
        self.negative_slope = negative_slope
        wn = norm == "weight_norm"
        k0 = kernel_size[0]
        convs = [WNConv2d(2 * in_channels, filters, kernel_size, weight_norm=False, rngs=rngs)]
        in_chs = min(filters_scale * filters, max_filters)
        for i, d in enumerate(dilations):
            out_chs = min((filters_scale ** (i + 1)) * filters, max_filters)
            convs.append(WNConv2d(in_chs, out_chs, kernel_size, stride=stride, dilation=(d, 1), weight_norm=wn,
                                  rngs=rngs))
            in_chs = out_chs
        out_chs = min((filters_scale ** (len(dilations) + 1)) * filters, max_filters)
        convs.append(WNConv2d(in_chs, out_chs, (k0, k0), weight_norm=wn, rngs=rngs))
        self.convs = nnx.List(convs)
        self.conv_post = WNConv2d(out_chs, out_channels, (k0, k0), weight_norm=wn, rngs=rngs)

    def __call__(self, x: jax.Array):
        """``x [B, C, N]`` -> (logits ``[B, T', F', out]``, feature maps)."""
        z = stft(x, self.n_fft, self.hop_length, self.normalized)        # [B, C, freq, frames]
        z = jnp.concatenate([z.real, z.imag], axis=1)                     # [B, 2C, freq, frames]
        z = jnp.transpose(z, (0, 3, 2, 1))                                # [B, frames, freq, 2C]
        fmap = []
        for conv in self.convs:
            z = jax.nn.leaky_relu(conv(z), self.negative_slope)
            fmap.append(z)
        return self.conv_post(z), fmap


class MultiScaleSTFTDiscriminator(nnx.Module):
    def __init__(self, filters: int = 32, *, in_channels: int = 1, out_channels: int = 1,
                 n_ffts: Sequence[int] = (1024, 2048, 512), hop_lengths: Sequence[int] = (256, 512, 128),
                 win_lengths: Sequence[int] = (1024, 2048, 512), rngs: nnx.Rngs, **kwargs):
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.discriminators = nnx.List([
            DiscriminatorSTFT(filters, in_channels=in_channels, out_channels=out_channels, n_fft=int(n),
                              hop_length=int(h), win_length=int(w), rngs=rngs, **kwargs)
            for n, h, w in zip(n_ffts, hop_lengths, win_lengths)])

    def __call__(self, x: jax.Array):
        logits, fmaps = [], []
        for disc in self.discriminators:
            logit, fmap = disc(x)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps


def make_discriminator(cfg, channels: int, rngs: nnx.Rngs) -> MultiScaleSTFTDiscriminator:
    """From the ``msstftd`` section of a codec training config."""
    return MultiScaleSTFTDiscriminator(
        int(cfg.filters), in_channels=channels, out_channels=int(cfg.out_channels),
        n_ffts=tuple(cfg.n_ffts), hop_lengths=tuple(cfg.hop_lengths), win_lengths=tuple(cfg.win_lengths),
        norm=str(cfg.norm), negative_slope=float(cfg.negative_slope), rngs=rngs)
