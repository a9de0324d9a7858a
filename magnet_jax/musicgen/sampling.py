"""Next-token sampling of MusicGen (audiocraft ``LMModel._sample_next_token`` + ``utils.sample_top_p/top_k``).

The nucleus, the k-th largest threshold and the draw are MAGNeT's sort-free ones (decoding/sampling.py): XLA:CPU's
sort of [B, K, card] took ~40 % of a batch-4 decode, and ``jax.random.categorical``'s Gumbel noise (one uniform
per token) another ~8 %; the two-level inverse CDF draws one uniform per row, the distribution of audiocraft's
``torch.multinomial``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from magnet_jax.decoding.sampling import inverse_cdf, kth_largest, nucleus
from magnet_jax.musicgen.config import MusicGenGenerationConfig


def sample_next(key, logits, config: MusicGenGenerationConfig):
    """int32 tokens [...] from float32 logits [..., card] (greedy, top-p, top-k or plain multinomial).

    top-p keeps token ``i`` iff the mass sorted before it is ``<= top_p`` (exact ties by index); top-k keeps the
    probabilities ``>=`` the k-th largest (ties at the threshold kept, as the reference); both renormalised."""
    if config.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    probs = jax.nn.softmax(logits / config.temp, axis=-1)
    if config.top_p > 0.0:
        weights = jnp.where(nucleus(probs, config.top_p), probs, 0.0)
    elif config.top_k > 0:
        weights = jnp.where(probs >= kth_largest(probs, min(config.top_k, probs.shape[-1])), probs, 0.0)
    else:
        weights = probs
    return inverse_cdf(key, weights)
