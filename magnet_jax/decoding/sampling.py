"""Token sampling for one decoding step: greedy, nucleus (top-p), top-k or plain, without a sort.

No sort (slow on XLA:CPU): the nucleus / k-th largest thresholds are found by a bisection over the
float32 bit patterns (monotone for non-negative floats, 31 masked reductions; each pass compares the
probabilities with the midpoint as a float, not their bit patterns with its bits: same order, one array read
instead of two, ~2x faster on XLA:CPU); sampling is a
two-level inverse CDF with one uniform per position (the distribution of ``torch.multinomial``).
``nucleus``, ``kth_largest`` and ``inverse_cdf`` also serve MusicGen's next-token sampler :func:`sample_next`
(audiocraft ``LMModel._sample_next_token`` + ``utils.sample_top_p/top_k``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from magnet_jax.decoding.config import GenerationConfig, MusicGenGenerationConfig


def sample_tokens(key, logits, probs, config: GenerationConfig):
    """Tokens [...] and the probabilities used as confidences [..., card] for one step.

    ``logits`` are the CFG logits, ``probs = softmax(logits / temperature)``.

    * ``use_sampling=False``: ``argmax(logits)``; confidences = ``probs``.
    * ``top_p > 0``: the reference nucleus (descending sort, drop where ``cumsum - p > top_p``), i.e.
      token ``i`` is kept iff the mass sorted before it is ``<= top_p`` (exact ties: by index); sampled;
      confidences = the untruncated ``probs`` (the reference sorts a copy).
    * else ``top_k > 0``: ``probs * (probs >= k-th largest)``, renormalised, sampled; confidences =
      these renormalised probs (the reference modifies ``probs`` in place).
    * else: sampled from ``probs``.
    """
    if not config.use_sampling:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), probs
    if config.top_p > 0.0:
        weights = jnp.where(nucleus(probs, config.top_p), probs, 0.0)
        conf = probs
    elif config.top_k > 0:
        kth = kth_largest(probs, min(config.top_k, probs.shape[-1]))
        weights = probs * (probs >= kth).astype(probs.dtype)
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
        conf = weights
    else:
        weights = conf = probs
    return inverse_cdf(key, weights), conf


# Bisection passes of the threshold searches: the searched bit patterns of finite non-negative float32s span
# less than 2^31, and each pass halves the interval (rounding up).
SEARCH_PASSES = 31


def _bits(p):
    return jax.lax.bitcast_convert_type(p, jnp.int32)


def _float(bits):
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def nucleus(probs, top_p: float):
    """The reference's nucleus, bool [..., V]: token ``i`` is kept iff the mass sorted before it is ``<= top_p``,
    exact ties sorted by index (``torch.sort`` leaves their order unspecified; index order is the stable one).

    With ``x* = nucleus_threshold``, every token above ``x*`` is kept (the mass before it is below the mass
    above ``x*``, which is ``<= top_p``). Of the tokens equal to ``x*``, the ``r``-th by index (from 0) comes
    after all of those above and ``r`` tied ones: it is kept iff ``mass(> x*) + r * x* <= top_p``. Keeping
    the whole tie group instead would grow the nucleus beyond the reference's (bf16 logits tie often).
    """
    x = nucleus_threshold(probs, top_p)
    above = probs > x
    tied = probs == x
    mass_above = jnp.sum(jnp.where(above, probs, 0.0), axis=-1, keepdims=True)
    # ``mass_above + r * x <= top_p`` is monotone in r, so a row keeps all of its tied tokens or none unless the
    # first is kept and the last is not; only then are the ranks (a cumsum over V, slow on XLA:CPU) needed.
    first = mass_above <= top_p
    last_rank = (jnp.sum(tied.astype(jnp.int32), axis=-1, keepdims=True) - 1).astype(probs.dtype)
    partial = jnp.any(first & (mass_above + last_rank * x > top_p))

    def ranked():
        rank = (jnp.cumsum(tied.astype(jnp.int32), axis=-1) - 1).astype(probs.dtype)
        return above | (tied & (mass_above + rank * x <= top_p))

    return jax.lax.cond(partial, ranked, lambda: above | (tied & first))


def nucleus_threshold(probs, top_p: float):
    """Smallest float ``x`` (as a float32 [..., 1]) with ``sum(probs[probs > x]) <= top_p``."""
    bits = _bits(probs)
    lo = jnp.zeros(probs.shape[:-1] + (1,), jnp.int32)
    hi = jnp.max(bits, axis=-1, keepdims=True)                       # mass above the max is 0

    def body(_, c):
        lo, hi = c
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(jnp.where(probs > _float(mid), probs, 0.0), axis=-1, keepdims=True) <= top_p
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    _, hi = jax.lax.fori_loop(0, SEARCH_PASSES, body, (lo, hi))
    return jax.lax.bitcast_convert_type(hi, jnp.float32)


def kth_largest(probs, k: int):
    """The k-th largest value of the last axis (ties counted), float32 [..., 1]."""
    bits = _bits(probs)
    lo = jnp.zeros(probs.shape[:-1] + (1,), jnp.int32)             # count(bits >= 0) = V >= k
    hi = jnp.max(bits, axis=-1, keepdims=True) + 1                  # count = 0 < k

    def body(_, c):
        lo, hi = c
        mid = lo + (hi - lo) // 2
        ok = jnp.sum((probs >= _float(mid)).astype(jnp.int32), axis=-1, keepdims=True) >= k
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, SEARCH_PASSES, body, (lo, hi))
    return jax.lax.bitcast_convert_type(lo, jnp.float32)


def inverse_cdf(key, weights, block: int = 64):
    """One categorical draw per row of non-negative ``weights`` [..., V] (need not be normalised).

    Two levels (block sums, then within the chosen block) keep the work O(V). A zero-weight token is
    never returned: the draw ``r`` is kept strictly below each level's total.
    """
    V = weights.shape[-1]
    pad = (-V) % block
    w = jnp.pad(weights, [(0, 0)] * (weights.ndim - 1) + [(0, pad)]) if pad else weights
    nb = w.shape[-1] // block
    wb = w.reshape(w.shape[:-1] + (nb, block))
    bcdf = jnp.cumsum(jnp.sum(wb, axis=-1), axis=-1)                 # [..., nb]
    total = bcdf[..., -1:]
    u = jax.random.uniform(key, total.shape, jnp.float32)
    r = jnp.minimum(u * total, jnp.nextafter(total, jnp.zeros_like(total)))
    blk = jnp.minimum(jnp.sum((bcdf <= r).astype(jnp.int32), axis=-1), nb - 1)          # [...]
    before = jnp.where(blk > 0, jnp.take_along_axis(bcdf, jnp.maximum(blk - 1, 0)[..., None], -1)[..., 0], 0.0)
    inner = jnp.cumsum(jnp.take_along_axis(wb, blk[..., None, None], axis=-2)[..., 0, :], axis=-1)  # [..., block]
    r2 = jnp.minimum(r[..., 0] - before, jnp.nextafter(inner[..., -1], 0.0))
    pos = jnp.minimum(jnp.sum((inner <= r2[..., None]).astype(jnp.int32), axis=-1), block - 1)
    return (blk * block + pos).astype(jnp.int32)


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
