"""The MusicGen training objective (audiocraft ``MusicGenSolver.run_step`` / ``_compute_cross_entropy``).

    seq    = delay_pattern(codes)[:, :, :T]          # causal: steps >= T do not affect the used logits
    logits = lm(seq, text) reverted to frames        # logits predicting codes[:, k, t] (step t + delays[k])
    mask   = padding_mask & (t + delays[k] < T)      # keep_only_valid_steps: a codebook's last delays[k] frames
    ce     = mean_k  CE(logits_k[mask_k], codes_k[mask_k])    # per-codebook mean over its valid tokens

CFG dropout as the reference's ``ClassifierFreeGuidanceDropout``: with probability ``cfg_dropout`` the text of
the *whole batch* is nullified (one draw per batch).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from magnet_jax.model import MusicGenLM
from magnet_jax.musicgen import pattern


def musicgen_loss(lm: MusicGenLM, codes, text_hidden, text_mask, *, padding_mask=None, rng=None,
                  cfg_dropout: float = 0.0):
    """``(loss, {"ce_per_codebook": [K]})``. codes int [B, K, T] (real codes < card), padding_mask bool [B, T]
    (True = a real frame; default all), ``rng`` needed when ``cfg_dropout > 0``."""
    c = lm.config
    B, K, T = codes.shape
    if cfg_dropout > 0.0:
        if rng is None:
            raise ValueError("musicgen_loss: cfg_dropout > 0 needs rng")
        keep = (jax.random.uniform(rng) >= cfg_dropout).astype(text_hidden.dtype)
        text_hidden, text_mask = text_hidden * keep, text_mask * keep.astype(text_mask.dtype)
    seq = pattern.build_sequence(codes, c.delays, c.mask_id)[:, :, :T]
    logits = pattern.revert_logits(lm(seq, text_hidden, text_mask), c.delays, T)       # [B, K, T, card]
    valid = jnp.asarray(pattern.frame_valid_mask(T, c.delays))[None]                      # [1, K, T]
    if padding_mask is not None:
        valid = valid & padding_mask[:, None, :].astype(bool)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, codes)                   # [B, K, T]
    w = valid.astype(jnp.float32)
    per_k = jnp.sum(jnp.where(valid, ce, 0.0), axis=(0, 2)) / jnp.maximum(jnp.sum(w, axis=(0, 2)), 1.0)
    return jnp.mean(per_k), {"ce_per_codebook": per_k}
