"""benchmarks/context_use.py's measures on hand-made codes (the copy baseline and the code statistics that tell a
model reading its neighbours from one reading only its text)."""
import numpy as np

from benchmarks.common import code_stats
from benchmarks.context_use import copy_left_hits


def test_copy_left_uses_the_nearest_kept_code_and_misses_without_one():
    targets = np.array([[5, 5, 5, 7, 7, 9],
                        [1, 2, 2, 2, 3, 3]])
    mask = np.array([[True, False, True, True, False, True],     # t0 has nothing kept on its left
                     [False, True, True, False, False, True]])
    # row 0: t0 miss, t2 <- t1 (5 == 5), t3 <- t1 (5 != 7), t5 <- t4 (7 != 9)
    # row 1: t1 <- t0 (1 != 2), t2 <- t0 (1 != 2), t5 <- t4 (3 == 3)
    np.testing.assert_array_equal(copy_left_hits(targets, mask), [False, True, False, False, False, False, True])


def test_code_stats_counts_changes_per_codebook_and_distinct_first_codes():
    codes = np.array([[[1, 1, 1, 2], [4, 5, 6, 7]],
                      [[3, 3, 3, 3], [0, 0, 1, 1]]])
    s = code_stats(codes)
    np.testing.assert_allclose(s["change_rate"], [1 / 6, 4 / 6])
    assert s["distinct_first_codebook"] == 1.5
