"""Attention masks of the LMs (boolean, True = may attend).

* Restricted context (MAGNeT paper §3.2, audiocraft ``MagnetLMModel._stage_attn_mask``): when predicting
  codebook stage > 0, self-attention is limited to a symmetric band ``|t_q - t_k| <= subcodes_context``
  (±5 frames ≈ 220 ms at 50 Hz); stage 0 attends everywhere. Unlike the reference (a fixed
  ``[S_al, S_al]`` bias, padded to a multiple of 8), the band is computed for any length ``T``, and kept
  structured (:class:`BandMask`) so attention kernels can run it as a local window.
* Causal (MusicGen): key position <= query position, also for a chunk starting at a cache offset.
* Text keys: see :func:`text_key_mask`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def band_mask(length: int, context: int) -> jnp.ndarray:
    """[T, T] bool: ``|i - j| <= context``."""
    i = jnp.arange(length)
    return jnp.abs(i[:, None] - i[None, :]) <= context


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BandMask:
    """The restricted-context band ``|i - j| <= context`` of a [T, T] self-attention, lifted (full
    attention) where ``full`` is True. Kept structured, not as a dense [T, T] array, so attention kernels
    can run it as a local window (``jax.nn.dot_product_attention(local_window_size=...)``, splash's
    ``LocalMask``); :meth:`dense` is the boolean mask the dense path uses.

    ``full``: None (always the band), a bool scalar (one stage for the batch, may be traced) or bool [B]
    (a stage per sample)."""
    full: jax.Array | None
    length: int = dataclasses.field(metadata={"static": True})
    context: int = dataclasses.field(metadata={"static": True})

    @property
    def per_sample(self) -> bool:
        return self.full is not None and jnp.ndim(self.full) == 1

    def dense(self) -> jnp.ndarray:
        """bool [T, T] (``full`` None or scalar) or [B, 1, T, T] (per sample); True = may attend."""
        band = band_mask(self.length, self.context)
        if self.full is None:
            return band
        if self.per_sample:
            return band[None, None] | self.full[:, None, None, None]
        return band | self.full


def dense_mask(mask):
    """A mask as a dense bool array (a :class:`BandMask` expanded; arrays and None unchanged)."""
    return mask.dense() if isinstance(mask, BandMask) else mask


def stage_self_attention_mask(length: int, stage, subcodes_context: int) -> BandMask | None:
    """Self-attention mask for a decoding / training stage, or None (= full attention).

    ``stage`` may be a Python int (static: stage 0 gives None), a traced integer scalar (one
    compiled program for all stages) or an int vector [B] of per-sample stages; the band comes back as a
    :class:`BandMask` (``.dense()``: [T, T], or [B, 1, T, T] per sample).
    """
    if subcodes_context < 0:
        return None
    if isinstance(stage, int):
        return None if stage == 0 else BandMask(None, length, subcodes_context)
    stage = jnp.asarray(stage)
    return BandMask(stage == 0, length, subcodes_context)


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
