"""benchmarks/generated_codes.py's helpers on hand-made inputs: the variant spec, the share of codebook-0 changes
seen in training, one-frame blips and held codes, and the real-code collage."""
import numpy as np
import pytest
from absl import app

from benchmarks.generated_codes import collage, melody_stats, parse_variant, seen_fraction


def test_variant_spec_gives_label_model_and_json_knobs():
    assert parse_variant("rotary, temp 2=/tmp/fold|temp=2.0|decoding_steps=[60,10,10,10]") == (
        "rotary, temp 2", "/tmp/fold", {"temp": 2.0, "decoding_steps": [60, 10, 10, 10]})
    assert parse_variant("shipped=bundled") == ("shipped", "bundled", {})
    with pytest.raises(app.UsageError, match="KNOB=VALUE"):
        parse_variant("x=bundled|temp")
    with pytest.raises(app.UsageError, match="LABEL=MODEL"):
        parse_variant("bundled")


def test_seen_fraction_counts_only_code_changes_of_the_first_codebook():
    codes = np.array([[[1, 1, 2, 2, 3, 9], [7, 8, 9, 7, 8, 9]]])     # changes 1->2, 2->3, 3->9; codebook 1 ignored
    assert seen_fraction(codes, {(1, 2), (3, 9), (8, 9)}) == pytest.approx(2 / 3)
    assert np.isnan(seen_fraction(np.zeros((1, 2, 5), int), {(1, 2)}))   # no change at all: undefined


def test_melody_stats_count_one_frame_excursions_and_codes_held_five_frames():
    row = [4, 4, 4, 4, 4, 9, 4, 4, 7, 7, 7, 7, 7, 7, 3, 8, 8]   # 9: a blip (4 9 4); 3 sits between 7 and 8: not one
    s = melody_stats(np.array([[row, [0] * len(row)]]))
    assert s["blip_rate"] == pytest.approx(1 / 15)
    assert s["held_codes"] == 2                                   # 4 (5 frames) and 7 (6 frames); 8 holds only 2


def test_collage_is_made_of_real_chunks_of_the_given_length():
    codes = np.arange(3 * 2 * 12).reshape(3, 2, 12)               # every (clip, codebook, frame) value unique
    out = collage(codes, 4, seed=1)
    assert out.shape == codes.shape
    for b in range(3):
        for t in (0, 4, 8):
            chunk = out[b, :, t:t + 4]
            j, k, s = np.argwhere(codes == chunk[0, 0])[0]
            assert k == 0
            np.testing.assert_array_equal(chunk, codes[j, :, s:s + 4])   # one clip's frames, in order, all codebooks
