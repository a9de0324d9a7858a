"""The codebook delay pattern (audiocraft ``DelayedPatternProvider``, ``flatten_first 0, empty_initial 0``).

Codebook k is shifted right by ``delays[k]`` steps behind one leading all-special step::

    seq[:, k, s] = codes[:, k, s - 1 - delays[k]]   if 0 <= s - 1 - delays[k] < T   else special

so a sequence of T frames has ``S = T + max(delays) + 1`` steps. The LM at step s predicts step s + 1;
codes are read back with ``codes[:, k, t] = seq[:, k, t + 1 + delays[k]]``.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np


def num_steps(frames: int, delays: Sequence[int]) -> int:
    return frames + max(delays) + 1


def source_index(frames: int, delays: Sequence[int]) -> np.ndarray:
    """int [K, S]: the frame each sequence step holds per codebook, -1 where the pattern has no code."""
    s = np.arange(num_steps(frames, delays))[None, :]
    t = s - 1 - np.asarray(delays)[:, None]
    return np.where((t >= 0) & (t < frames), t, -1)


def valid_mask(frames: int, delays: Sequence[int]) -> np.ndarray:
    """bool [K, S]: steps that hold a real code (the pattern's ``mask``)."""
    return source_index(frames, delays) >= 0


def build_sequence(codes, delays: Sequence[int], special: int):
    """codes int [B, K, T] -> delayed sequence int [B, K, S] (special where the pattern has no code)."""
    T = codes.shape[-1]
    idx = source_index(T, delays)
    got = jnp.take_along_axis(codes, jnp.asarray(np.maximum(idx, 0))[None].repeat(codes.shape[0], 0), axis=-1)
    return jnp.where(jnp.asarray(idx >= 0)[None], got, special)


def revert_sequence(seq, delays: Sequence[int], frames: int):
    """Delayed sequence int [B, K, S >= frames + max_delay + 1] -> codes int [B, K, frames]."""
    t = np.arange(frames)[None, :] + 1 + np.asarray(delays)[:, None]            # [K, T]
    return jnp.take_along_axis(seq, jnp.asarray(t)[None].repeat(seq.shape[0], 0), axis=-1)


def revert_logits(logits, delays: Sequence[int], frames: int):
    """Logits of the delayed sequence [B, K, S, card] -> per frame [B, K, T, card]: the logits that
    predict ``codes[:, k, t]`` (audiocraft ``revert_pattern_logits``: step ``t + delays[k]``). Frames whose
    step lies beyond the given logits (see :func:`frame_valid_mask`) repeat the last step: mask them out."""
    t = np.minimum(np.arange(frames)[None, :] + np.asarray(delays)[:, None], logits.shape[2] - 1)   # [K, T]
    idx = jnp.asarray(t)[None, :, :, None]
    return jnp.take_along_axis(logits, jnp.broadcast_to(idx, logits.shape[:2] + (frames, 1)), axis=2)


def frame_valid_mask(frames: int, delays: Sequence[int]) -> np.ndarray:
    """bool [K, T]: frames predicted from a sequence of ``frames + 1`` steps (audiocraft
    ``compute_predictions(keep_only_valid_steps=True)``): ``t + delays[k] < frames``."""
    return np.arange(frames)[None, :] + np.asarray(delays)[:, None] < frames
