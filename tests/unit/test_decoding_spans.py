"""Unit kinds (chunk / span / token): ranking, selection and scoring against closed forms."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magnet_jax.decoding.spans import CHUNK, DONT_REMASK_SCORE, SPAN, TOKEN, descending_ranks, lps_mask, units_for


def _lps_reference(scores, target, L):
    """The reference's binary search (``_least_probable_span_masking``), written with Python ints."""
    T = len(scores)
    span_scores = np.array([scores[i:i + L].sum() for i in range(T - L + 1)], np.float32)
    order = np.argsort(-span_scores, kind="stable")

    def mask_of(u):
        m = np.zeros(T, bool)
        for s in order[:u]:
            m[s:s + L] = True
        return m

    target = max(target, L)
    lo, hi = target // L, target - L + 1
    mid = round(0.5 * (lo + hi))
    if mid == lo or mid == hi:
        return mask_of(mid)
    while lo < mid < hi:
        m = mask_of(mid)
        if m.sum() > target:
            hi = mid
        else:
            lo = mid
        mid = round(0.5 * (lo + hi))
    return m


def test_descending_ranks_is_a_stable_descending_sort():
    rs = np.random.RandomState(0)
    s = rs.randint(0, 4, (5, 40)).astype(np.float32)         # many ties
    ranks = np.asarray(descending_ranks(jnp.asarray(s)))
    order = np.argsort(-s, axis=-1, kind="stable")
    np.testing.assert_array_equal(np.take_along_axis(ranks, order, -1), np.broadcast_to(np.arange(40), (5, 40)))


def test_lps_mask_is_the_reference_binary_search():
    rs = np.random.RandomState(1)
    fn = jax.jit(lps_mask, static_argnums=2)
    for T, L in [(30, 3), (31, 3), (48, 2), (64, 4)]:
        for target in (0, 1, L, 7, T // 2, T - 1, T):
            scores = rs.exponential(size=T).astype(np.float32)
            np.testing.assert_array_equal(np.asarray(fn(scores, target, L)), _lps_reference(scores, target, L),
                                          err_msg=f"T={T} L={L} target={target}")


def test_units_for_and_usable_lengths():
    assert units_for("nonoverlap", 3) is CHUNK and units_for("stride1", 3) is SPAN
    assert units_for("nonoverlap", 1) is TOKEN and units_for("stride1", 1) is TOKEN
    assert CHUNK.usable(50, 3) == 48 and SPAN.usable(50, 3) == 50 and TOKEN.usable(50, 1) == 50
    keep = np.zeros((2, 9), bool)
    keep[0, :4] = True                                       # chunk 0 kept, chunk 1 partly kept
    keep[1, 6:] = True
    np.testing.assert_array_equal(np.asarray(CHUNK.unit_keep(jnp.asarray(keep), 3)),
                                  [[True, False, False], [False, False, True]])


def test_chunk_selection_and_scores():
    scores = jnp.asarray([[0.1, 0.9, DONT_REMASK_SCORE, 0.5], [0.3, 0.3, 0.2, 0.1]], jnp.float32)
    unit_sel, tok_sel = CHUNK.select(scores, jnp.asarray([2, 3]), 2)
    np.testing.assert_array_equal(np.asarray(unit_sel), [[False, True, False, True], [True, True, True, False]])
    np.testing.assert_array_equal(np.asarray(tok_sel), np.repeat(np.asarray(unit_sel), 2, -1))
    p = jnp.asarray(np.random.RandomState(2).uniform(0.05, 1, (2, 8)).astype(np.float32))
    pc = np.asarray(p).reshape(2, 4, 2)
    got = np.asarray(CHUNK.score(p, unit_sel, None, 2, "max"))
    np.testing.assert_allclose(got, np.where(np.asarray(unit_sel), 1 - pc.max(-1), DONT_REMASK_SCORE), rtol=1e-6)
    got = np.asarray(CHUNK.score(p, unit_sel, None, 2, "prod"))
    np.testing.assert_allclose(got, np.where(np.asarray(unit_sel), -np.log(pc).sum(-1), DONT_REMASK_SCORE),
                               rtol=1e-5)


@pytest.mark.parametrize("units", [TOKEN, SPAN])
def test_token_scores_use_the_masked_tokens_only(units):
    p = jnp.asarray([[0.5, 0.25, 1.0, 0.125]], jnp.float32)
    masked = jnp.asarray([[True, False, True, True]])
    sel = jnp.ones((1, 4), bool)                               # a span may cover a kept token: not scored
    np.testing.assert_allclose(np.asarray(units.score(p, sel, masked, 3, "max")),
                               [[np.log(2), DONT_REMASK_SCORE, 0.0, np.log(8)]], rtol=1e-6)
