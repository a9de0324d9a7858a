"""A random-weight EnCodec with *useful* codebooks, for demos, tests and benchmarks.

Conv / LSTM weights are drawn at fan-in scale. A fresh quantizer would give all-zero codes, so the
codebooks are seeded k-means style: level ``q`` takes random frames of the level-``q`` residual of
the encoder's latents on a probe signal (tones + noise), so every level uses many codes.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.codec.config import CodecConfig, SeanetConfig
from magnet_jax.codec.encodec import Encodec, EncodecNet


def random_encodec(sample_rate: int = 32000, frame_rate: float = 50, num_codebooks: int = 4, bins: int = 2048,
                   channels: int = 1, n_filters: int = 4, dimension: int = 16, lstm: int = 1,
                   seed: int = 0) -> Encodec:
    """A small non-causal SEANet EnCodec (hop = sample_rate / frame_rate) with random weights."""
    hop = sample_rate / frame_rate
    if hop != int(hop):
        raise ValueError(f"sample_rate {sample_rate} is not a multiple of frame_rate {frame_rate}")
    ratios, rest = [], int(hop)
    for r in (8, 5, 4, 4, 2, 2, 3):
        if rest % r == 0 and len(ratios) < 5:
            ratios.append(r)
            rest //= r
    if rest != 1:
        ratios.append(rest)
    side = SeanetConfig(channels=channels, dimension=dimension, n_filters=n_filters, ratios=tuple(ratios), lstm=lstm)
    cfg = CodecConfig(sample_rate=sample_rate, encoder=side, decoder=side, total_codebooks=num_codebooks,
                      num_codebooks=num_codebooks, bins=bins, name="random_encodec")
    net = EncodecNet(cfg)
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(net, nnx.Param)):
        shape = var[...].shape
        name = str(path[-1])
        if name.startswith(("w_ih", "w_hh")):
            bound = 1 / math.sqrt(shape[0])
            value = rng.uniform(-bound, bound, shape)
        elif len(shape) >= 2 and name != "embed":
            value = rng.standard_normal(shape) / math.sqrt(float(np.prod(shape[:-1])))
        else:
            value = np.zeros(shape)
        var[...] = jnp.asarray(value, jnp.float32)
    # seed the codebooks from residuals of the encoder's latents on a probe signal
    t = np.arange(int(4 * sample_rate)) / sample_rate
    probe = np.stack([0.3 * np.sin(2 * np.pi * f * t) * (rng.random(t.size) < 0.999)
                      + 0.05 * rng.standard_normal(t.size) for f in (110.0, 440.0, 1320.0, 3000.0)])
    probe = probe[:, :, None].repeat(channels, 2)  # NWC
    z = np.asarray(net.encoder(jnp.asarray(probe, jnp.float32))).reshape(-1, dimension)
    embed = np.zeros((num_codebooks, bins, dimension), np.float32)
    residual = z
    for q in range(num_codebooks):
        pick = residual[rng.integers(0, len(residual), bins)]
        embed[q] = pick + 0.05 * residual.std() * rng.standard_normal(pick.shape)
        d = (residual ** 2).sum(1, keepdims=True) - 2 * residual @ embed[q].T + (embed[q] ** 2).sum(1)[None]
        residual = residual - embed[q][d.argmin(1)]
    net.quantizer.embed[...] = jnp.asarray(embed)
    return Encodec(cfg, net)
