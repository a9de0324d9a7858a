"""Classifier-free guidance's row layout, one for every generation program.

A guided step runs the conditional and the null (zero text) rows of a batch as one ``2B`` batch of *pairs*: row
``2i`` is item ``i``'s conditional row, row ``2i + 1`` its null row. Not ``[cond; null]``: with the batch sharded
over devices (``("data", "fsdp")``) a pair then sits on one device, so neither the conditional rows'
cross-attention nor the guidance moves rows between devices. With ``[cond; null]`` the TPU compiler had to
collective-permute every layer's conditional rows and the logits' halves each step; at ``magnet_small_10secs``,
batch 8 on v4:2x2x1 it fused the permuted halves into the sampling's softmax and that fusion needed 37 MB of the
16 MB vmem (``benchmarks/tpu_compile.py``). Per row the arithmetic is the reference's, in another row order.
"""
from __future__ import annotations

import jax.numpy as jnp


def pairs(x):
    """``[B, ...] -> [2B, ...]``: each row twice, adjacent (the same input for a conditional and a null row)."""
    return jnp.repeat(x, 2, axis=0)


def with_null(x, null=None):
    """``[B, ...] -> [2B, ...]``: rows ``2i = x[i]``, ``2i + 1 = null[i]`` (default zeros: the null condition)."""
    null = jnp.zeros_like(x) if null is None else null
    return jnp.stack([x, null], axis=1).reshape((2 * x.shape[0],) + x.shape[1:])


def split(y):
    """``[2B, ...] -> ([B, ...], [B, ...])``: the conditional and the null rows of a pair batch."""
    y = y.reshape((y.shape[0] // 2, 2) + y.shape[1:])
    return y[:, 0], y[:, 1]


def guide(y, coef):
    """``uncond + (cond - uncond) * coef`` of a pair batch ``y [2B, ...]`` (audiocraft's guidance)."""
    cond, uncond = split(y)
    return uncond + (cond - uncond) * coef
