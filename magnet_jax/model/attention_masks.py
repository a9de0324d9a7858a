"""Attention masks of the LMs (boolean, True = may attend).

* Restricted context (MAGNeT paper §3.2, audiocraft ``MagnetLMModel._stage_attn_mask``): when predicting
  codebook stage > 0, self-attention is limited to a symmetric band ``|t_q - t_k| <= subcodes_context``
  (±5 frames ≈ 220 ms at 50 Hz); stage 0 attends everywhere. Unlike the reference (a fixed
  ``[S_al, S_al]`` bias, padded to a multiple of 8), the band is computed for any length ``T``.
* Causal (MusicGen): key position <= query position, also for a chunk starting at a cache offset.
* Text keys: see :func:`text_key_mask`.
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


def causal_mask(q_len: int, k_len: int, offset=0) -> jnp.ndarray:
    """[Tq, Tk] bool: query ``offset + i`` attends keys ``j <= offset + i`` (``offset`` may be traced)."""
    return jnp.arange(k_len)[None, :] <= (jnp.arange(q_len) + offset)[:, None]


def text_key_mask(text_mask: jnp.ndarray, mask_padding: bool = False) -> jnp.ndarray:
    """[B, 1, 1, S] (or [1, 1, 1, S]) bool cross-attention key mask from a [B, S] text mask (1 = token).

    Default: the reference's pad-to-longest semantics with static shapes. audiocraft tokenizes a batch
    padded to its longest text and has no key mask, so padded (zero) keys of shorter rows take part in
    the softmax up to that length, and there are no keys beyond it. Keys at positions >= the longest
    text of the whole batch (``max(text_mask.sum(-1))``; with CFG the batch includes the null rows) are
    therefore masked, so any extra padding (training's fixed length, a bucket) gives the reference's
    output. ``mask_padding=True`` masks every padded key instead. Text must be right-padded.
    """
    valid = text_mask > 0
    if mask_padding:
        return valid[:, None, None, :]
    longest = jnp.max(jnp.sum(valid.astype(jnp.int32), axis=-1))
    return (jnp.arange(text_mask.shape[-1]) < longest)[None, None, None, :]
