"""Generation inputs: checks at the public API and the padded (known codes, keep mask) form of the loop."""
from __future__ import annotations

import jax.numpy as jnp

from magnet_jax.decoding.config import GenerationConfig
from magnet_jax.decoding.spans import units_for
from magnet_jax.model.config import MagnetConfig


def prepare_inputs(c: MagnetConfig, text_hidden, text_mask, prompt, prompt_lens, infill_mask, init_codes, num_frames,
                   num_samples, config: GenerationConfig):
    """Checks and pads the inputs -> (text_hidden, text_mask, known [B, K, T], keep [B, T]), T usable by the units."""
    K = c.n_q
    if len(config.decoding_steps) != K:
        raise ValueError(f"decoding_steps has {len(config.decoding_steps)} entries, the model has n_q={K}")
    if num_frames is None:
        num_frames = init_codes.shape[-1] if init_codes is not None else c.segment_frames
    T = int(num_frames)
    batch = [x.shape[0] for x in (text_hidden, prompt, init_codes, infill_mask) if x is not None]
    B = batch[0] if batch else (num_samples or 1)
    if any(b != B for b in batch) or (num_samples is not None and num_samples != B):
        raise ValueError(f"inconsistent batch sizes: {batch} (num_samples={num_samples})")

    if text_hidden is not None:
        text_hidden = jnp.asarray(text_hidden, jnp.float32)
        if text_mask is None:
            text_mask = jnp.ones(text_hidden.shape[:2], jnp.int32)
        text_mask = jnp.asarray(text_mask, jnp.int32)
        if text_hidden.ndim != 3 or text_hidden.shape[-1] != c.text_dim or text_mask.shape != text_hidden.shape[:2]:
            raise ValueError(f"text_hidden must be [B, S, {c.text_dim}] with text_mask [B, S]; got "
                             f"{text_hidden.shape} / {text_mask.shape}")
    else:
        text_mask = None

    t = jnp.arange(T)
    known = jnp.zeros((B, K, T), jnp.int32)
    keep = jnp.zeros((B, T), jnp.bool_)
    if init_codes is not None:
        init_codes = jnp.asarray(init_codes, jnp.int32)
        if init_codes.shape != (B, K, T):
            raise ValueError(f"init_codes must be [B, K, T] = {(B, K, T)}, got {init_codes.shape}")
        if infill_mask is None:
            raise ValueError("init_codes needs infill_mask (True = regenerate)")
        known = init_codes
    if infill_mask is not None:
        if init_codes is None:
            raise ValueError("infill_mask needs init_codes [B, K, T] (the tokens kept outside the region)")
        infill_mask = jnp.asarray(infill_mask, jnp.bool_)
        if infill_mask.shape != (B, T):
            raise ValueError(f"infill_mask must be [B, T] = {(B, T)}, got {infill_mask.shape}")
        keep = ~infill_mask
    if prompt is not None:
        prompt = jnp.asarray(prompt, jnp.int32)
        P = prompt.shape[-1]
        if prompt.ndim != 3 or prompt.shape[:2] != (B, K) or P >= T:
            raise ValueError(f"prompt must be [B={B}, K={K}, P < T={T}], got {prompt.shape}")
        lens = jnp.full((B,), P, jnp.int32) if prompt_lens is None else jnp.asarray(prompt_lens, jnp.int32)
        in_prompt = t[None, :] < lens[:, None]                                   # [B, T]
        padded = jnp.pad(prompt, ((0, 0), (0, 0), (0, T - P)))
        known = jnp.where(in_prompt[:, None, :], padded, known)
        keep = keep | in_prompt
    elif prompt_lens is not None:
        raise ValueError("prompt_lens given without prompt")

    T = units_for(config.span_arrangement, c.span_len).usable(T, c.span_len)    # chunks: the reference trims
    known, keep = known[..., :T], keep[..., :T]
    return text_hidden, text_mask, known, keep
