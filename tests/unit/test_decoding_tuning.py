"""benchmarks/decoding_tuning.py's helpers on hand-made inputs (the variant spec, the code-palette overlap) and its
doc table."""
import numpy as np
import pytest
from absl import app

from benchmarks.decoding_tuning import code_overlap, parse_knobs
from benchmarks.tables import decoding_tuning_table


def test_variant_spec_gives_label_and_json_knobs():
    assert parse_knobs("steps 40=decoding_steps=[40,5,5,5]|choice_temp=2.0") == (
        "steps 40", {"decoding_steps": [40, 5, 5, 5], "choice_temp": 2.0})
    assert parse_knobs("model default=") == ("model default", {})
    with pytest.raises(app.UsageError, match="KNOB=VALUE"):
        parse_knobs("x=temp")
    with pytest.raises(app.UsageError, match="LABEL="):
        parse_knobs("temp")


def test_code_overlap_counts_generated_frames_whose_code_the_clip_uses():
    real = np.array([[[1, 1, 2, 2]], [[7, 7, 8, 8]]])
    gen = np.array([[[1, 2, 9, 9]], [[7, 1, 1, 1]]])
    o = code_overlap(gen, real)
    assert o["own_code_overlap"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert o["other_code_overlap"] == pytest.approx((0 / 4 + 3 / 4) / 2)   # clip 1 against clip 0's codes {1, 2}


def test_table_rows_in_the_json_order_with_the_manifest_named():
    r = {"family_accuracy": 0.5, "mode_accuracy": 0.5, "key_accuracy": 0.1, "tempo_spearman": 0.2, "fad": 170.04}
    result = {"rows": {"b": {**r, "own_code_overlap": 0.47}, "a": r}, "num_clips": 56, "seconds": 10.0,
              "manifest": "/x/valid_r1.jsonl", "embedding": "mel",
              "machine": {"cpu": "cpu", "cpu_count": 2, "date": "2026-01-01"}}
    lines = decoding_tuning_table(result).splitlines()
    assert [x.split(" | ")[0] for x in lines if x.startswith("| ") and "---" not in x][1:] == ["| b", "| a"]
    assert "| b | 0.500 | 0.500 | 0.100 | 0.200 | 170.0 | 0.470 | - |" in lines
    assert "`valid_r1.jsonl`" in lines[-1]
