"""The tokenize report: one record per input, kept (segments, seconds) or skipped (reason), in input order.

``{"kept": [{"path", "segments", "seconds"}], "skipped": [{"path", "reason"}], "summary": {...}}``;
written to ``--report`` (default ``DATA_DIR/tokenize_report.json``) and stored inside the dataset folder.
"""
from __future__ import annotations

import collections
from typing import Mapping

from magnet_jax.data.tokenize.segments import PreparedFile

REPORT_FILENAME = "tokenize_report.json"


class Report:
    """Kept / skipped records, one per input."""

    def __init__(self):
        self.kept: list[tuple[int, dict]] = []
        self.skipped: list[tuple[int, dict]] = []

    def keep(self, index: int, entry: dict):
        self.kept.append((index, entry))

    def skip(self, index: int, path: str, reason: str):
        self.skipped.append((index, {"path": path, "reason": reason}))

    def to_json(self, summary: dict | None = None) -> dict:
        out = {"kept": [e for _, e in sorted(self.kept, key=lambda x: x[0])],
               "skipped": [e for _, e in sorted(self.skipped, key=lambda x: x[0])]}
        out["summary"] = {**summarize(out), **(summary or {})}
        return out


def kept_entry(prep: PreparedFile, sample_rate: int) -> dict:
    """The report record of a kept file (``seconds``: its duration at the codec rate)."""
    e = {"path": prep.item.path, "segments": len(prep.segments), "seconds": prep.seconds}
    if prep.dropped_silent:
        e["dropped_silent_segments"] = prep.dropped_silent
    return e


def summarize(report: Mapping) -> dict:
    kept, skipped = report["kept"], report["skipped"]
    reasons = collections.Counter(e["reason"].split(":")[0] for e in skipped)
    return dict(inputs=len(kept) + len(skipped), kept=len(kept), skipped=len(skipped),
                segments=sum(e["segments"] for e in kept),
                hours=round(sum(e.get("seconds", 0.0) for e in kept) / 3600, 6),
                skip_reasons=dict(sorted(reasons.items())))


def format_summary(result) -> str:
    """Human-readable lines for a :class:`~magnet_jax.data.tokenize.driver.TokenizeResult`."""
    s = result.report["summary"]
    lines = [f"{'reused existing dataset' if result.reused else 'tokenized'}: {s['kept']} kept / {s['skipped']} "
             f"skipped of {s['inputs']} inputs, {s['segments']} segments, {s['hours'] * 3600:.1f} s "
             f"({s['hours']:.3f} h) of audio",
             f"dataset: {result.dataset_dir}", f"report:  {result.report_path}"]
    if s.get("skip_reasons"):
        lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in s["skip_reasons"].items()))
    return "\n".join(lines)
