"""``param``: the one way magnet-jax creates an NNX parameter (float32 master weights, logical axis names)."""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import nnx


def param(value, names: Sequence[str | None] | None = None) -> nnx.Param:
    """An ``nnx.Param`` holding ``value``. With ``names`` (one logical axis name per dim, see
    ``magnet_jax.sharding``), the parameter is placed by ``sharding.shard_model``; without, it is replicated."""
    if names is None:
        return nnx.Param(value)
    if len(names) != value.ndim:
        raise ValueError(f"param of shape {value.shape} needs {value.ndim} axis names, got {tuple(names)}")
    return nnx.Param(value, eager_sharding=False, out_sharding=tuple(names))


def zeros_param(*shape: int) -> nnx.Param:
    """A replicated float32 parameter of zeros (its values come from a converter or an initialiser)."""
    return param(jnp.zeros(shape, jnp.float32))
