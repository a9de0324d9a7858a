"""Issue 32, tokenizer: nothing lost (an --overwrite rebuild that fails keeps the old dataset), every input
accounted for (a corpus with no usable input still writes its report), bad outputs / names / codecs found
before anything is encoded, each as one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from magnet_jax.data import tokenize as tok
from magnet_jax.data.audio_io import LevelOptions
from tests.helpers import ROOT, signal, write_corpus
from tests.tokenize_corpus import tiny_codec_dir

OPTS = tok.TokenizeOptions(segment_seconds=1.0, overlap_seconds=0.0, min_seconds=0.5, length_quantum_seconds=0.5,
                           batch_size=4, level=LevelOptions(silence_db=-60.0), read_workers=1)
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}


def _one_error_line(p) -> str:
    """The run failed with exit 2 and one error line (TFDS's own INFO log lines aside), no traceback."""
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("tokenize_dataset.py: error:")]
    assert p.returncode == 2 and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    return tiny_codec_dir(tmp_path_factory.mktemp("codec") / "tiny_encodec")[0]


def _corpus(d):
    return str(write_corpus(d, clips=[dict(name="a.wav", wav=signal("chord", 16000, 1.6), sr=16000),
                                      dict(name="b.wav", wav=signal("tone", 16000, 0.7), sr=16000)]))


def _broken_manifest(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "text.wav").write_text("not audio")
    (d / "m.jsonl").write_text("\n".join(json.dumps({"path": p}) for p in ("missing.wav", "text.wav")) + "\n")
    return str(d / "m.jsonl")


def test_failed_overwrite_keeps_the_existing_dataset(codec_dir, tmp_path):
    out = tmp_path / "out"
    res = tok.tokenize_corpus(codec=codec_dir, manifest=_corpus(tmp_path / "c"), data_dir=str(out), name="keep",
                              options=OPTS)
    n = len(tfds.builder_from_directory(res.dataset_dir).as_data_source("train"))
    with pytest.raises(tok.driver.NoUsableInputError, match="no usable input: 2 of 2 inputs skipped"):
        tok.tokenize_corpus(codec=codec_dir, manifest=_broken_manifest(tmp_path / "bad"), data_dir=str(out),
                            name="keep", options=OPTS, overwrite=True)
    assert len(tfds.builder_from_directory(res.dataset_dir).as_data_source("train")) == n
    assert not any(p.name.startswith(".previous") for p in (out / "keep").iterdir())


def test_overwrite_killed_midway_is_restored_by_the_next_run(codec_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    manifest = _corpus(tmp_path / "c")
    res = tok.tokenize_corpus(codec=codec_dir, manifest=manifest, data_dir=str(out), name="kill", options=OPTS)
    from magnet_jax.data.tokenize import builder

    def killed(self):
        raise KeyboardInterrupt
        yield
    monkeypatch.setattr(builder.AudioCodes, "_iter_examples", killed)
    monkeypatch.setattr(tok.driver.os, "replace", _no_restore(os.replace, res.dataset_dir))
    with pytest.raises(KeyboardInterrupt):
        tok.tokenize_corpus(codec=codec_dir, manifest=manifest, data_dir=str(out), name="kill", options=OPTS,
                            overwrite=True)
    monkeypatch.undo()
    assert not os.path.exists(res.dataset_dir)       # as a SIGKILL would leave it: old dataset aside
    again = tok.tokenize_corpus(codec=codec_dir, manifest=manifest, data_dir=str(out), name="kill", options=OPTS)
    assert again.reused and again.report["kept"] == res.report["kept"]


def _no_restore(replace, dataset_dir):
    """os.replace that moves the dataset aside but never back (the process 'dies' before it could)."""
    def fake(src, dst):
        if os.fspath(dst) == dataset_dir:
            return None
        return replace(src, dst)
    return fake


def test_no_usable_input_writes_the_report_and_one_line(codec_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "tokenize_dataset.py"), f"--codec={codec_dir}",
           f"--data_dir={out}", f"--manifest={_broken_manifest(tmp_path / 'bad')}", "--noprogress"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert "no usable input" in _one_error_line(p)
    rep = json.load(open(out / tok.REPORT_FILENAME))
    assert rep["summary"]["inputs"] == 2 and rep["summary"]["skipped"] == 2 and not rep["kept"]


@pytest.mark.parametrize("case", ["report_is_folder", "data_dir_is_file", "name_escapes", "codec_missing",
                                  "codec_not_a_codec"])
def test_bad_outputs_and_codec_are_one_line_before_encoding(codec_dir, tmp_path, case):
    manifest = _corpus(tmp_path / "c")
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    args = {"report_is_folder": [f"--report={tmp_path / 'folder'}"],
            "data_dir_is_file": [], "name_escapes": ["--name=../../escape"],
            "codec_missing": [], "codec_not_a_codec": []}[case]
    data_dir = tmp_path / ("file" if case == "data_dir_is_file" else "out")
    codec = {"codec_missing": tmp_path / "nope", "codec_not_a_codec": tmp_path / "folder"}.get(case, codec_dir)
    cmd = [sys.executable, os.path.join(ROOT, "tools", "tokenize_dataset.py"), f"--codec={codec}",
           f"--data_dir={data_dir}", f"--manifest={manifest}", "--noprogress", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, "HF_HUB_OFFLINE": "1"}, timeout=300)
    _one_error_line(p)
    assert not list((tmp_path / "folder").iterdir())
