"""Generation inputs: checks at the public API and the padded (known codes, keep mask) form of the loop.

Bad numbers must not become junk audio: codes outside the codebooks (``>= card`` gives NaN logits, ``-1``
wraps to the mask token), non-finite text states (all-``card - 1`` codes) and malformed masks are refused
here with a one-line ValueError. Values are checked on the host when the inputs are concrete (skipped
when ``generate`` is traced inside a caller's ``jit``; the shapes are always checked).
"""
from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.decoding.config import GenerationConfig
from magnet_jax.decoding.spans import units_for
from magnet_jax.model.config import MagnetConfig


def _host(x):
    """numpy value of ``x``, or None when it is traced (no value to check)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def _count(name: str, value, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _check_codes(name: str, codes, kept, card: int) -> None:
    """``codes`` int [B, K, T]: kept positions (``kept`` bool [B, T]) in ``[0, card)``, the others (regenerated,
    never read) in ``[0, card]`` (the mask id ``card`` allowed)."""
    v = _host(codes)
    if v is None:
        return
    if not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"{name} must hold integer codes, got dtype {v.dtype}")
    k = np.broadcast_to(np.asarray(kept)[:, None, :], v.shape) if kept is not None else np.ones(v.shape, bool)
    bad = k & ((v < 0) | (v >= card))
    if bad.any():
        raise ValueError(f"{name} has codes outside [0, {card}) where they are kept (e.g. {v[bad][0]} at "
                         f"[b, k, t] = {list(map(int, np.argwhere(bad)[0]))}): pass codes of this model's codec")
    bad = ~k & ((v < 0) | (v > card))
    if bad.any():
        raise ValueError(f"{name} has codes outside [0, {card}] in the regenerated region (e.g. {v[bad][0]}): "
                         f"use a code or the mask id {card} there")


def _check_text(c: MagnetConfig, text_hidden, text_mask):
    if text_hidden is None:
        if text_mask is not None:
            raise ValueError("text_mask given without text_hidden (pass both, or neither for unconditional)")
        return None, None
    h = _host(text_hidden)
    if h is not None and not (np.issubdtype(h.dtype, np.floating) or np.issubdtype(h.dtype, np.integer)):
        raise ValueError(f"text_hidden must be a float array [B, S, {c.text_dim}], got dtype {h.dtype}")
    text_hidden = jnp.asarray(text_hidden, jnp.float32)
    if text_hidden.ndim != 3 or text_hidden.shape[-1] != c.text_dim:
        raise ValueError(f"text_hidden must be [B, S, {c.text_dim}] (the T5 width of this model), got "
                         f"{text_hidden.shape}")
    if h is not None and not np.isfinite(h).all():
        raise ValueError(f"text_hidden has {int((~np.isfinite(h)).sum())} non-finite values (NaN / inf): check the "
                         f"text encoder's output")
    if text_mask is None:
        return text_hidden, jnp.ones(text_hidden.shape[:2], jnp.int32)
    m = _host(text_mask)
    if np.shape(text_mask) != text_hidden.shape[:2]:
        raise ValueError(f"text_mask must be [B, S] = {text_hidden.shape[:2]} like text_hidden, got "
                         f"{np.shape(text_mask)}")
    if m is not None and not np.isin(m, (0, 1)).all():
        raise ValueError("text_mask must hold only 0 / 1 (1 = text token), got other values")
    return text_hidden, jnp.asarray(text_mask, jnp.int32)


def prepare_inputs(c: MagnetConfig, text_hidden, text_mask, prompt, prompt_lens, infill_mask, init_codes, num_frames,
                   num_samples, config: GenerationConfig):
    """Checks and pads the inputs -> (text_hidden, text_mask, known [B, K, T], keep [B, T]), T usable by the units."""
    K = c.n_q
    if not isinstance(config, GenerationConfig):
        raise ValueError(f"config must be a GenerationConfig, got {type(config).__name__}")
    if len(config.decoding_steps) != K:
        raise ValueError(f"decoding_steps has {len(config.decoding_steps)} entries, the model has n_q={K}")
    if num_frames is None:
        num_frames = np.shape(init_codes)[-1] if init_codes is not None else c.segment_frames
    T = _count("num_frames", num_frames)
    batch = [np.shape(x)[0] for x in (text_hidden, prompt, init_codes, infill_mask) if x is not None and np.ndim(x)]
    B = batch[0] if batch else (_count("num_samples", num_samples) if num_samples is not None else 1)
    if any(b != B for b in batch) or (num_samples is not None and num_samples != B):
        raise ValueError(f"inconsistent batch sizes: {batch} (num_samples={num_samples})")
    units = units_for(config.span_arrangement, c.span_len)
    if units.usable(T, c.span_len) < 1:
        raise ValueError(f"num_frames={T} is shorter than one span ({c.span_len} frames)")
    text_hidden, text_mask = _check_text(c, text_hidden, text_mask)

    t = jnp.arange(T)
    known = jnp.zeros((B, K, T), jnp.int32)
    keep = jnp.zeros((B, T), jnp.bool_)
    if (init_codes is None) != (infill_mask is None):
        raise ValueError("infill needs both infill_mask [B, T] (True = regenerate) and init_codes [B, K, T] "
                         "(the tokens kept outside the region)")
    if infill_mask is not None:
        if np.shape(init_codes) != (B, K, T):
            raise ValueError(f"init_codes must be [B, K, T] = {(B, K, T)}, got {np.shape(init_codes)}")
        if np.shape(infill_mask) != (B, T):
            raise ValueError(f"infill_mask must be [B, T] = {(B, T)}, got {np.shape(infill_mask)}")
        region = _host(infill_mask)
        if region is not None and region.dtype != np.bool_ and not np.isin(region, (0, 1)).all():
            raise ValueError("infill_mask must be boolean (True = regenerate), got other values")
        _check_codes("init_codes", init_codes, None if region is None else ~region.astype(bool), c.card)
        known = jnp.asarray(init_codes, jnp.int32)
        keep = ~jnp.asarray(infill_mask, jnp.bool_)
    if prompt is not None:
        P = np.shape(prompt)[-1] if np.ndim(prompt) else 0
        if np.ndim(prompt) != 3 or np.shape(prompt)[:2] != (B, K) or P >= T:
            raise ValueError(f"prompt must be [B={B}, K={K}, P < T={T}], got {np.shape(prompt)}")
        if prompt_lens is None:
            lens = np.full((B,), P)
        else:
            lens = _host(prompt_lens)
            if lens is not None and (lens.shape != (B,) or not np.issubdtype(lens.dtype, np.integer)
                                     or (lens < 0).any() or (lens > P).any()):
                raise ValueError(f"prompt_lens must be {B} integers in [0, {P}] (the prompt's length), got "
                                 f"{lens.tolist()}")
        _check_codes("prompt", prompt, None if lens is None else np.arange(P)[None, :] < lens[:, None], c.card)
        lens = jnp.asarray(lens if lens is not None else prompt_lens, jnp.int32)
        in_prompt = t[None, :] < lens[:, None]                                   # [B, T]
        padded = jnp.pad(jnp.asarray(prompt, jnp.int32), ((0, 0), (0, 0), (0, T - P)))
        known = jnp.where(in_prompt[:, None, :], padded, known)
        keep = keep | in_prompt
    elif prompt_lens is not None:
        raise ValueError("prompt_lens given without prompt")

    T = units.usable(T, c.span_len)                                              # chunks: the reference trims
    return text_hidden, text_mask, known[..., :T], keep[..., :T]
