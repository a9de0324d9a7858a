"""Corpus listing and sidecars (magnet_jax.data.tokenize.corpus) and the report (…tokenize.report)."""
from __future__ import annotations

import gzip
import json

import pytest

from magnet_jax.data import tokenize as tok
from magnet_jax.data.tokenize.corpus import CorpusError
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


def test_equivalent_absolute_paths_are_one_input(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    lines = [{"path": str(tmp_path / "a.wav")}, {"path": f"{tmp_path}/./a.wav"}, {"path": f"{tmp_path}//a.wav"},
             {"path": f"{tmp_path}/x/../a.wav"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    items = tok.list_manifest(tmp_path / "m.jsonl")
    assert [it.path for it in items] == [str(tmp_path / "a.wav")] * 4
    assert items[0].error is None and all(it.error.startswith("duplicate") for it in items[1:])


def test_undecodable_line_is_one_skipped_input(tmp_path):
    data = (json.dumps({"path": "a.wav"}).encode() + b"\n" + b'{"path": "\xff\xfe.wav"}\n'
            + json.dumps({"path": "b.wav"}).encode() + b"\n")
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress(data))
    items = tok.list_manifest(tmp_path / "m.jsonl.gz")
    assert [it.path.rsplit("/", 1)[1] for it in items] == ["a.wav", "m.jsonl.gz:2", "b.wav"]
    assert items[1].error.startswith("malformed_manifest_line: UnicodeDecodeError")


def test_empty_or_missing_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "m.jsonl").write_text("\n  \n")
    with pytest.raises(CorpusError, match="lists no inputs"):
        tok.list_manifest(tmp_path / "m.jsonl")
    with pytest.raises(CorpusError, match="does not exist"):
        tok.list_manifest(tmp_path / "missing.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="holds no files"):
        tok.list_audio_dir(tmp_path / "empty")
