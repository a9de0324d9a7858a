"""Corpus listing and sidecars (magnet_jax.data.tokenize.corpus) and the report (…tokenize.report)."""
from __future__ import annotations

import json

from magnet_jax.data import tokenize as tok
from magnet_jax.data.tokenize.report import Report, summarize


def test_manifest_relative_paths_sidecars_and_precedence(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"description": "side", "genre": "Rock", "moods": ["x", " y "],
                                                 "bpm": "96", "instrument": "piano"}))
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "a.wav", "description": "line"}) + "\n\n"
                                      + json.dumps({"path": "sub/../a.wav"}) + "\n" + "{oops\n")
    items = tok.list_manifest(tmp_path / "m.jsonl")
    assert [it.path for it in items] == [str(tmp_path / "a.wav"), str(tmp_path / "a.wav"), f"{tmp_path}/m.jsonl:4"]
    assert items[0].metadata == {"description": "line", "genre": "Rock", "moods": "x, y", "bpm": 96.0,
                                 "instrument": "piano"}
    assert items[1].error.startswith("duplicate") and items[2].error.startswith("malformed_manifest_line")


def test_malformed_sidecar_is_ignored_and_folder_listing(tmp_path):
    (tmp_path / "b.flac").write_bytes(b"")
    (tmp_path / "b.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.wav").write_bytes(b"")
    items = tok.list_audio_dir(tmp_path)
    assert [(it.path.rsplit("/", 1)[1], it.error and it.error.split(":")[0]) for it in items] == [
        ("b.flac", None), ("notes.txt", "unsupported_extension")]
    assert items[0].metadata == {}


def test_report_order_and_summary():
    r = Report()
    r.skip(2, "c", "silent: quiet")
    r.keep(0, {"path": "a", "segments": 3, "seconds": 7200.0})
    r.skip(1, "b", "error: x")
    out = r.to_json({"extra": 1})
    assert [e["path"] for e in out["skipped"]] == ["b", "c"]
    assert out["summary"] == {**summarize(out), "extra": 1}
    assert out["summary"]["hours"] == 2.0 and out["summary"]["skip_reasons"] == {"error": 1, "silent": 1}
