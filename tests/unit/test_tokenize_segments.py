"""Segment planning (magnet_jax.data.tokenize.segments): overlapping segments, tails and short files kept."""
import numpy as np
import pytest
import soundfile as sf

from magnet_jax.data import tokenize as tok
from magnet_jax.data.audio_io import LevelOptions
from magnet_jax.data.tokenize.segments import padded_length

SR, HOP = 16000, 32


def test_segment_policy_no_overlap():
    o = tok.TokenizeOptions(segment_seconds=1.0, overlap_seconds=0.0, min_seconds=0.5, length_quantum_seconds=0.5)
    # the 0.3 s tail is kept: a last full segment ends at the end of the file
    assert tok.plan_segments(int(2.3 * SR), SR, HOP, o) == [(0, SR), (SR, SR), (20800, SR)]
    assert tok.plan_segments(int(1.7 * SR), SR, HOP, o) == [(0, SR), (11200, SR)]
    assert tok.plan_segments(int(0.49 * SR), SR, HOP, o) == []                          # too short
    assert tok.plan_segments(int(0.7 * SR), SR, HOP, o) == [(0, int(0.7 * SR))]         # short file: whole
    assert padded_length(int(0.7 * SR), SR, HOP, o) == SR                              # padded to the quantum
    assert padded_length(int(0.2 * SR), SR, HOP, o) == SR // 2
    for off, n in tok.plan_segments(int(7.77 * SR), SR, HOP, o):
        assert off % HOP == 0 and n == SR


def test_every_window_up_to_the_overlap_lies_in_one_segment():
    o = tok.TokenizeOptions(segment_seconds=3.0, overlap_seconds=1.0)
    n = int(10.37 * SR)
    plan = tok.plan_segments(n, SR, HOP, o)
    assert plan[0][0] == 0 and plan[-1][0] + plan[-1][1] > n - HOP
    assert all(b[0] - a[0] <= 2 * SR for a, b in zip(plan, plan[1:]))
    w = SR  # 1 s windows at every frame offset
    for a in range(0, n - w, HOP):
        assert any(off <= a and a + w <= off + length for off, length in plan), a


def test_options_validate():
    with pytest.raises(ValueError, match="overlap_seconds"):
        tok.TokenizeOptions(segment_seconds=10.0, overlap_seconds=10.0)


def test_prepare_file_keeps_short_file_and_marks_its_real_frames(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(p, (0.3 * np.sin(np.arange(int(0.7 * SR)) * 0.05)).astype(np.float32), SR)
    o = tok.TokenizeOptions(segment_seconds=1.0, overlap_seconds=0.0, length_quantum_seconds=0.5,
                            level=LevelOptions(silence_db=None))
    prep = tok.prepare_file(tok.CorpusItem(0, str(p)), SR, 1, HOP, o)
    (off, wav), = prep.segments
    assert off == 0 and wav.shape == (1, SR) and not wav[:, int(0.7 * SR):].any()
    assert prep.frames == {0: -(-int(0.7 * SR) // HOP)} and prep.seconds == 0.7
