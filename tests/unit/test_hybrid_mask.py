"""Hybrid-MAGNeT's semi-autoregressive mask against a hand-built one (rules of the hybrid_magnet branch)."""
import numpy as np
import pytest

from magnet_jax.model.hybrid import HybridMagnetConfig, semi_autoregressive_mask


def hand_built(T: int, K: int, P: int, s: int, ctx: int) -> np.ndarray:
    """Cell by cell: causal rows before P; after it, the stage block (rows s..s+T-1 x keys 1+s..s+T, the
    +-ctx band around key r+1 for s > 0); every key in the rows outside the block."""
    S = T + K
    m = np.zeros((S, S), bool)
    for r in range(S):
        for c in range(S):
            if r < P:
                m[r, c] = c <= r
            elif s <= r < s + T:
                m[r, c] = (1 + s <= c <= s + T) and (s == 0 or ctx < 0 or abs(r + 1 - c) <= ctx)
            else:
                m[r, c] = True
    return m


@pytest.mark.parametrize("P,s", [(0, 0), (0, 2), (3, 0), (5, 1), (7, 3), (11, 2), (12, 1)])
def test_mask_equals_hand_built(P, s):
    T, K, ctx = 12, 4, 2
    got = np.asarray(semi_autoregressive_mask(T, K, [P], [s], ctx))
    assert got.shape == (1, 1, T + K, T + K)
    np.testing.assert_array_equal(got[0, 0], hand_built(T, K, P, s, ctx))


def test_mask_per_sample_and_unrestricted():
    T, K = 9, 4
    P, s = np.array([0, 4, 8]), np.array([3, 0, 2])
    got = np.asarray(semi_autoregressive_mask(T, K, P, s, 1))
    for b in range(3):
        np.testing.assert_array_equal(got[b, 0], hand_built(T, K, int(P[b]), int(s[b]), 1))
    free = np.asarray(semi_autoregressive_mask(T, K, [2], [3], -1))[0, 0]   # subcodes_context -1: no band
    np.testing.assert_array_equal(free, hand_built(T, K, 2, 3, -1))
    assert free[5, 4:4 + T].all() and not free[5, :4].any()


def test_every_row_attends_somewhere():
    m = np.asarray(semi_autoregressive_mask(30, 4, np.arange(0, 30, 3), np.arange(10) % 4, 5))
    assert m.any(-1).all()


def test_config_needs_one_step_delays():
    assert HybridMagnetConfig().delays == (0, 1, 2, 3) and HybridMagnetConfig().segment_frames == 1500
    with pytest.raises(ValueError, match="delays 0..3"):
        HybridMagnetConfig(delays=(0, 0, 1, 1))
