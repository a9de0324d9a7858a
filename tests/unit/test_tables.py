"""benchmarks/tables.py: generated doc tables from committed results."""
from benchmarks.tables import continuation_infill_table

MACHINE = {"cpu": "cpu", "cpu_count": 2, "date": "2026-01-01"}


def _row(family):
    return {"n": 8, "family_accuracy": family, "chroma_agreement": 0.9, "rms_ratio": 1.0}


def _result(sources):
    rows = {f"{s}/{t}": _row(f) for s, f in sources.items() for t in ("continuation", "infill")}
    return {"settings": {"prompt_seconds": 4.0, "seconds": 10.0, "infill": [3.0, 6.0], "num_clips": 8,
                         "family_chance": 1 / 9}, "rows": rows, "model": "bundled", "machine": MACHINE}


def test_continuation_table_lists_the_real_model_other_sources_then_random_init_per_task():
    # the JSON's own order does not matter: real, model, any other source, random-init
    text = continuation_infill_table(_result({"random-init": 0.125, "previous LM": 0.5, "model": 0.375,
                                              "real": 0.875}))
    lines = [x for x in text.splitlines() if x.startswith("| continuation")]
    assert [x.split(" | ")[1] for x in lines] == ["real clip", "model", "previous LM", "random-init"]
    assert [x.split(" | ")[2] for x in lines] == ["0.88", "0.38", "0.50", "0.12"]
    assert sum(x.startswith("| infill 3-6 s") for x in text.splitlines()) == 4
    plain = continuation_infill_table(_result({"real": 0.875, "model": 0.375, "random-init": 0.125}))
    assert "previous LM" not in plain and sum(x.startswith("| continuation 4-10 s") for x in plain.splitlines()) == 3
