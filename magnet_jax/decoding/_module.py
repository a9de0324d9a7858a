"""The model and the key as the jitted decoding programs take them.

* :func:`rebuilder`: a module rebuilt from ``nnx.split`` leaves inside a loop body. NNX transforms in the model
  (the layer scan) refuse variables created at an outer trace level, and a ``fori_loop`` / ``scan`` body is a
  trace of its own: the body merges a fresh module from the (closed-over) leaves on every call.
* :func:`as_key`: the ``rng`` argument of every ``generate`` as one typed key.
"""
from __future__ import annotations

import numbers
from typing import Callable

import jax
import numpy as np
from flax import nnx


def rebuilder(graphdef, state) -> Callable[[], nnx.Module]:
    """``model()`` -> a new module merged from ``graphdef`` and the leaves of ``state`` (``nnx.split``), for
    each call inside a loop body."""
    leaves, treedef = jax.tree.flatten(state)

    def model():
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))

    return model


def as_key(rng) -> jax.Array:
    """A typed ``jax.random.key`` from ``rng``: None (seed 0), an int seed, a typed key (as is) or a raw
    ``uint32 [2]`` key of ``jax.random.PRNGKey`` (wrapped: the same random streams, draw for draw)."""
    if rng is None:
        return jax.random.key(0)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return jax.random.key(int(rng))
    if isinstance(rng, (jax.Array, np.ndarray)):
        if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
            return rng
        if rng.dtype == np.uint32:
            return jax.random.wrap_key_data(rng)
    raise ValueError(f"rng must be a jax.random.key or an int seed, got {type(rng).__name__}")
