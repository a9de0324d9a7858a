"""Segment planning (magnet_jax.data.tokenize.segments)."""
from magnet_jax.data import tokenize as tok

SR = 16000


def test_segment_policy():
    hop = 32
    o = tok.TokenizeOptions(segment_seconds=1.0, min_seconds=0.5, length_quantum_seconds=0.5)
    assert tok.plan_segments(int(2.3 * SR), SR, hop, o) == [(0, SR), (SR, SR)]          # 0.3 s tail dropped
    assert tok.plan_segments(int(1.7 * SR), SR, hop, o) == [(0, SR), (SR, SR // 2)]     # 0.7 -> 0.5 kept
    assert tok.plan_segments(int(0.49 * SR), SR, hop, o) == []                          # too short
    for off, n in tok.plan_segments(int(7.77 * SR), SR, hop, o):
        assert off % hop == 0 and n % hop == 0
