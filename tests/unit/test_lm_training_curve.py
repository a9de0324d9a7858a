"""benchmarks/lm_training_curve.py: runs read from trainer workdirs (a warm restart continues the step count) and
from an earlier results JSON, side by side, and the table drawn from them."""
import json

import pytest

from benchmarks.lm_training_curve import parse_compare, read_run
from benchmarks.tables import lm_curves_table


def _workdir(path, evals, last_step, batch=8):
    path.mkdir()
    rows = [{"step": s, "loss": 1.0} for s in range(50, last_step + 1, 50)]
    rows += [{"step": s, "eval_loss_stage0": a, "eval_loss_stage1": b} for s, a, b in evals]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (path / "config.json").write_text(json.dumps({"batch_size": batch, "learning_rate": 1e-3}))
    return str(path)


def test_a_warm_restart_continues_the_step_count(tmp_path):
    a = _workdir(tmp_path / "a", [(500, 5.0, 6.5), (1000, 4.0, 6.4)], 1000)
    b = _workdir(tmp_path / "b", [(500, 3.5, 6.2)], 500)
    run = read_run([a, b])
    assert [(r["step"], r["eval_loss_stage0"]) for r in run["rows"]] == [(500, 5.0), (1000, 4.0), (1500, 3.5)]
    assert run["batch_size"] == 8


def test_compare_reads_workdirs_and_results_json_and_tabulates_every_500_steps(tmp_path):
    a = _workdir(tmp_path / "a", [(250, 5.5, 6.6), (500, 5.0, 6.5)], 500)
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"rows": [{"step": 500, "eval_loss_stage0": 6.3, "eval_loss_stage1": 6.9},
                                            {"step": 1000, "eval_loss_stage0": 3.57, "eval_loss_stage1": 6.65}],
                                   "batch_size": 8, "learning_rate": 1e-3, "workdirs": ["/gone"]}))
    runs = parse_compare([f"scratch={earlier}", f"warm={a}"])
    assert list(runs) == ["scratch", "warm"] and runs["scratch"]["workdirs"] == ["/gone"]
    assert runs["scratch"]["unigram_per_stage"] is None and "unigram_per_stage" not in runs["warm"]
    table = lm_curves_table({"runs": runs, "unigram_per_stage": [6.54, 6.87], "machine": {"cpu": "x"}})
    assert "| run | 500 | 1000 |" in table                   # step 250 is not a column
    assert "| scratch (batch 8) | 6.30 / 6.90 | 3.57 / 6.65 |" in table
    assert "| warm (batch 8) | 5.00 / 6.50 | - |" in table
    assert "unigram 6.54 / 6.87" in table


def test_compare_refuses_a_spec_without_a_label(tmp_path):
    with pytest.raises(SystemExit, match="LABEL=WORKDIR"):
        parse_compare([str(tmp_path)])
