"""Attention masks of MAGNeT (boolean, True = may attend).

* Restricted context (paper §3.2, audiocraft ``MagnetLMModel._stage_attn_mask``): when predicting
  codebook stage > 0, self-attention is limited to a symmetric band ``|t_q - t_k| <= subcodes_context``
  (±5 frames ≈ 220 ms at 50 Hz); stage 0 attends everywhere. Unlike the reference (a fixed
  ``[S_al, S_al]`` bias, padded to a multiple of 8), the band is computed for any length ``T``.
* Text keys: the reference lets padded text positions (zero vectors) take part in the softmax; the
  optional key mask removes them.
"""
from __future__ import annotations

import jax.numpy as jnp


def band_mask(length: int, context: int) -> jnp.ndarray:
    """[T, T] bool: ``|i - j| <= context``."""
    i = jnp.arange(length)
    return jnp.abs(i[:, None] - i[None, :]) <= context


def stage_self_attention_mask(length: int, stage, subcodes_context: int) -> jnp.ndarray | None:
    """Self-attention mask for a decoding / training stage, or None (= full attention).

    ``stage`` may be a Python int (static: stage 0 gives None), a traced integer scalar (one
    compiled program for all stages; [T, T]) or an int vector [B] of per-sample stages ([B, 1, T, T]).
    """
    if subcodes_context < 0:
        return None
    if isinstance(stage, int):
        return None if stage == 0 else band_mask(length, subcodes_context)
    stage = jnp.asarray(stage)
    if stage.ndim == 1:
        return band_mask(length, subcodes_context)[None, None] | (stage == 0)[:, None, None, None]
    return band_mask(length, subcodes_context) | (stage == 0)


def text_key_mask(text_mask: jnp.ndarray) -> jnp.ndarray:
    """[B, 1, 1, S] bool key mask for cross-attention from a [B, S] text mask (1 = token)."""
    return (text_mask > 0)[:, None, None, :]
