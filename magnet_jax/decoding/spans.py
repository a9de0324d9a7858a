"""Decoding units: which tokens a step re-masks and how the new tokens are scored.

A *unit* is what the schedule counts (``num_masked``) and ranks by score (higher = re-masked next):

* ``chunk`` (``nonoverlap``, ``span_len > 1``): the ``T // L`` non-overlapping spans of ``L`` tokens;
  re-mask the top-``num_masked`` chunks; score ``1 - max p`` (``'max'``) or ``sum -log p`` (``'prod'``).
* ``span`` (``stride1``, ``span_len > 1``): tokens; re-mask the union of the top overlapping spans found by
  the reference's binary search (``_least_probable_span_masking``); score ``-log p`` per token.
* ``token`` (``span_len == 1``, either arrangement): tokens; top-``num_masked``; score ``-log p``.

Units not masked in a step get :data:`DONT_REMASK_SCORE`, so later steps only re-mask units just resampled.
Each kind is one :class:`Units` value; :func:`units_for` is the only place the arrangement is looked at.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

DONT_REMASK_SCORE = -1e4          # reference DONT_REMASK_ME_SCORE


# ----------------------------------------------------------------------------- ranking
def descending_ranks(scores):
    """Rank of each entry in a stable descending sort along the last axis (0 = highest).

    Ties: lower index first. torch's ``topk`` / ``argsort`` break exact ties in an unspecified order; with
    real-valued scores ties only occur among units that cannot be selected (the ``-1e4`` locked ones) or in
    the first step, where every unit is masked anyway.
    """
    order = jnp.argsort(scores, axis=-1, descending=True, stable=True)
    n = scores.shape[-1]
    ranks = jnp.zeros(scores.shape, jnp.int32)
    return jnp.put_along_axis(ranks, order, jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), scores.shape),
                              axis=-1, inplace=False)


def _round_half_even_of_half(s):
    """Python ``round(0.5 * s)`` for a non-negative int ``s`` (ties to even)."""
    q = s // 2
    return jnp.where((s % 2 == 1) & (q % 2 == 1), q + 1, q)


def lps_mask(scores, num_masked, span_len: int):
    """``_least_probable_span_masking`` for one item: scores [T] (-log p), returns bool [T].

    Span scores are sums over the ``T - L + 1`` overlapping windows; the union of the top-``u`` spans is
    found by the reference's binary search on ``u`` (Python round-half-even midpoints) and the mask
    *last evaluated* is returned.
    """
    T = scores.shape[-1]
    n_spans = T - span_len + 1
    span_scores = scores[:n_spans]
    for j in range(1, span_len):
        span_scores = span_scores + scores[j:j + n_spans]
    ranks = descending_ranks(span_scores)

    def spans_mask(u):
        starts = ranks < u                                   # [n_spans]
        m = jnp.zeros((T,), jnp.bool_)
        for j in range(span_len):
            m = m.at[j:j + n_spans].max(starts)
        return m

    target = jnp.maximum(num_masked, span_len)
    lo = target // span_len
    hi = target - span_len + 1
    mid = _round_half_even_of_half(lo + hi)

    def cond(c):
        lo, hi, mid, _ = c
        return (mid > lo) & (mid < hi)

    def body(c):
        lo, hi, mid, _ = c
        m = spans_mask(mid)
        over = jnp.sum(m.astype(jnp.int32)) > target
        lo, hi = jnp.where(over, lo, mid), jnp.where(over, mid, hi)
        return lo, hi, _round_half_even_of_half(lo + hi), m

    return jax.lax.while_loop(cond, body, (lo, hi, mid, spans_mask(mid)))[3]


# ----------------------------------------------------------------------------- the three unit kinds
def _top_units(scores, num_masked, span_len):
    """Top-``num_masked`` units per item -> (unit_sel [B, U], token_sel [B, T])."""
    sel = descending_ranks(scores) < num_masked[:, None]
    return sel, (jnp.repeat(sel, span_len, axis=-1) if span_len > 1 else sel)


def _top_spans(scores, num_masked, span_len):
    sel = jax.vmap(functools.partial(lps_mask, span_len=span_len))(scores, num_masked)
    return sel, sel


def _chunk_scores(p_tok, unit_sel, masked, span_len, scoring):
    """Chunk scores of the chunks masked in this step (``unit_sel``), from the sampled tokens' probs."""
    del masked
    pc = p_tok.reshape(p_tok.shape[:-1] + (p_tok.shape[-1] // span_len, span_len))
    s = 1 - jnp.max(pc, axis=-1) if scoring == "max" else jnp.sum(-jnp.log(pc), axis=-1)
    return jnp.where(unit_sel, s, DONT_REMASK_SCORE)


def _token_scores(p_tok, unit_sel, masked, span_len, scoring):
    """``-log p`` of the tokens masked in this step (not the selected ones: a span may cover kept tokens)."""
    del unit_sel, span_len, scoring
    return jnp.where(masked, -jnp.log(p_tok), DONT_REMASK_SCORE)


def _chunk_keep(keep, span_len):
    B, T = keep.shape
    return keep.reshape(B, T // span_len, span_len).all(-1)


class Units(NamedTuple):
    """One unit kind: ``unit_keep(keep, L)``, ``select(scores, num_masked, L)``, ``score(p_tok, unit_sel,
    masked, L, scoring)`` and the sequence length it decodes (``usable(T, L)``: chunks trim the tail)."""
    name: str
    unit_keep: Callable
    select: Callable
    score: Callable
    usable: Callable


CHUNK = Units("chunk", _chunk_keep, _top_units, _chunk_scores, lambda T, L: L * (T // L))
SPAN = Units("span", lambda keep, L: keep, _top_spans, _token_scores, lambda T, L: T)
TOKEN = Units("token", lambda keep, L: keep, _top_units, _token_scores, lambda T, L: T)


def units_for(arrangement: str, span_len: int) -> Units:
    if span_len == 1:
        return TOKEN
    return CHUNK if arrangement == "nonoverlap" else SPAN
