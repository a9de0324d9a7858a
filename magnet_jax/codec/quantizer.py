"""Residual vector quantization (inference): nearest code per level on the running residual."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from magnet_jax.util.params import zeros_param

_HP = jax.lax.Precision.HIGHEST


def nearest_code(x: jax.Array, embed: jax.Array) -> jax.Array:
    """Index of the nearest codebook entry for every row of ``x [..., D]`` (``embed [bins, D]``).

    Same formula as the references (``-(|x|^2 - 2 x.e + |e|^2)``, first maximum wins), so that the
    float rounding, and hence ties and near-ties, behave the same way.
    """
    x2 = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    e2 = jnp.sum(jnp.square(embed), axis=-1)
    dist = -(x2 - 2 * jnp.einsum("...d,kd->...k", x, embed, precision=_HP) + e2)
    return jnp.argmax(dist, axis=-1).astype(jnp.int32)


class ResidualVQ(nnx.Module):
    """``total`` codebooks of ``bins`` entries of dimension ``dim``, stored as ``[total, bins, dim]``."""

    def __init__(self, dim: int, bins: int, total: int):
        self.dim, self.bins, self.total = dim, bins, total
        self.embed = zeros_param(total, bins, dim)

    def encode(self, x: jax.Array, n_q: int) -> jax.Array:
        """``x [B, T, D]`` -> codes ``int32 [B, n_q, T]``."""
        embed = self.embed[...]
        residual = x
        codes = []
        for q in range(n_q):
            idx = nearest_code(residual, embed[q])
            residual = residual - jnp.take(embed[q], idx, axis=0)
            codes.append(idx)
        return jnp.stack(codes, axis=1)

    def decode(self, codes: jax.Array) -> jax.Array:
        """codes ``[B, K, T]`` -> ``[B, T, D]`` (sum of the K selected entries, in level order)."""
        embed = self.embed[...]
        out = None
        for q in range(codes.shape[1]):
            e = jnp.take(embed[q], codes[:, q], axis=0)
            out = e if out is None else out + e
        return out
