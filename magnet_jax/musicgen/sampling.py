"""Next-token sampling of MusicGen (audiocraft ``LMModel._sample_next_token`` + ``utils.sample_top_p/top_k``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from magnet_jax.musicgen.config import MusicGenGenerationConfig


def top_p_keep(probs, p: float):
    """bool mask of the nucleus: tokens whose preceding sorted mass is <= p (ties broken by index)."""
    order = jnp.argsort(-probs, axis=-1, stable=True)
    sorted_p = jnp.take_along_axis(probs, order, axis=-1)
    keep_sorted = (jnp.cumsum(sorted_p, axis=-1) - sorted_p) <= p
    inv = jnp.argsort(order, axis=-1)
    return jnp.take_along_axis(keep_sorted, inv, axis=-1)


def top_k_keep(probs, k: int):
    """bool mask: probs >= the k-th largest (the reference keeps ties at the threshold)."""
    kth = jax.lax.top_k(probs, k)[0][..., -1:]
    return probs >= kth


def sample_next(key, logits, config: MusicGenGenerationConfig):
    """int32 tokens [...] from float32 logits [..., card] (greedy, top-p, top-k or plain multinomial)."""
    if config.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    probs = jax.nn.softmax(logits / config.temp, axis=-1)
    if config.top_p > 0.0:
        keep = top_p_keep(probs, config.top_p)
    elif config.top_k > 0:
        keep = top_k_keep(probs, min(config.top_k, probs.shape[-1]))
    else:
        keep = jnp.ones(probs.shape, bool)
    logp = jnp.where(keep & (probs > 0), jnp.log(probs), -jnp.inf)
    return jax.random.categorical(key, logp, axis=-1).astype(jnp.int32)
