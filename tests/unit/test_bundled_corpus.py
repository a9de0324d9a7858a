"""The bundled corpus' pure parts: descriptions, the held-out split, clip finishing, rendering guards."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from magnet_jax.bundled import corpus
from magnet_jax.bundled import descriptions as describe
from tests.helpers import ROOT

META = dict(instrument="church organ", genre="chorale", era="baroque", composer="Bach", bpm=60.0, key="A",
            mode="minor", meter="4/4")


def test_descriptions_name_the_instrument_and_vary():
    texts = {describe.describe(META, seed) for seed in range(200)}
    assert len(texts) >= 8                                   # wording / field order vary across clips
    assert all("church organ" in t for t in texts)
    assert sum("A minor" in t for t in texts) > len(texts) // 2
    assert any("60 bpm" in t for t in texts)
    slow = {"slow", "calm", "gentle", "laid-back"}
    assert all(not (set(t.split()) & {"fast", "lively", "upbeat", "energetic"}) for t in texts)
    assert any(set(t.replace(",", "").split()) & slow for t in texts)
    assert describe.describe(META, 3) == describe.describe(META, 3)


def test_tempo_words_and_families():
    assert [describe.tempo_word(b) for b in (60, 90, 140)] == ["slow", "moderate", "fast"]
    assert len(describe.FAMILIES) == 9 and {f for _, f in describe.INSTRUMENTS.values()} == set(describe.FAMILIES)


def test_split_holds_out_whole_works_deterministically():
    works = [f"bach/bwv{i}.mxl" for i in range(2000)]
    splits = [corpus.split_of(w, 0.1) for w in works]
    assert splits == [corpus.split_of(w, 0.1) for w in works]
    assert 0.07 < splits.count("valid") / len(works) < 0.13


def test_finish_trims_fades_and_normalises():
    sr = 1000
    x = np.concatenate([np.zeros(300), np.sin(np.arange(5000) * 0.3), np.zeros(200)]).astype(np.float32)
    y = corpus._finish(np.stack([x, x], 1), sr, max_seconds=3.0)
    assert y.shape == (3000,) and y.dtype == np.float32
    assert abs(np.abs(y).max() - 0.9) < 1e-6
    assert abs(y[0]) > 0.1 and abs(y[-1]) < 1e-3            # leading silence dropped, faded out
    assert corpus._finish(np.zeros((100, 2), np.float32), sr, 3.0).size == 0


def _fake_fluidsynth(folder, body: str):
    """A ``fluidsynth`` on PATH that runs ``body`` with $OUT = the -F file (argument 8)."""
    exe = folder / "fluidsynth"
    exe.write_text(f'#!/bin/sh\nOUT="$8"\n{body}\n')
    exe.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_render_stops_a_score_that_never_ends_and_leaves_no_renderer(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _fake_fluidsynth(tmp_path, 'echo $$ > "$OUT.pid"\n'
                                                'while true; do head -c 65536 /dev/zero >> "$OUT"; sleep 0.01; done'))
    out = tmp_path / "x.wav"
    t0 = time.monotonic()
    with pytest.raises(corpus.RunawayRender, match="does not end"):
        corpus.render("x.mid", str(out), 16000, "gm.sf2", max_seconds=2.0, timeout_s=30)
    assert time.monotonic() - t0 < 20                                     # stopped by size, not by the timeout
    assert out.stat().st_size < 2.0 * 16000 * 8 + 1024 + 20 * 65536        # the cap (+ what a poll lets through)
    pid = int((tmp_path / "x.wav.pid").read_text())
    with pytest.raises(ProcessLookupError):                               # the renderer is gone (killed, reaped)
        os.kill(pid, 0)


def test_render_timeout_and_failure_are_errors_and_a_clean_render_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _fake_fluidsynth(tmp_path, "exec sleep 30"))
    with pytest.raises(subprocess.TimeoutExpired):
        corpus.render("x.mid", str(tmp_path / "a.wav"), 16000, "gm.sf2", max_seconds=2.0, timeout_s=0.5)
    monkeypatch.setenv("PATH", _fake_fluidsynth(tmp_path, "echo broken >&2; exit 3"))
    with pytest.raises(subprocess.CalledProcessError) as e:
        corpus.render("x.mid", str(tmp_path / "b.wav"), 16000, "gm.sf2")
    assert b"broken" in e.value.stderr
    monkeypatch.setenv("PATH", _fake_fluidsynth(tmp_path, 'head -c 1000 /dev/zero > "$OUT"'))
    corpus.render("x.mid", str(tmp_path / "c.wav"), 16000, "gm.sf2", max_seconds=2.0)
    assert (tmp_path / "c.wav").stat().st_size == 1000


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan killed by the kernel may wait to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_renderer_dies_with_the_process_that_started_it(tmp_path):
    """A build stopped mid-render (killed) leaves no renderer writing: the renderer gets SIGKILL with its parent."""
    out = tmp_path / "x.wav"
    fake = _fake_fluidsynth(tmp_path, 'echo $$ > "$OUT.pid"\nexec sleep 120')
    env = dict(os.environ, PATH=fake, PYTHONPATH=str(ROOT))
    code = "import sys; from magnet_jax.bundled import corpus; corpus.render('x.mid', sys.argv[1], 16000, 'gm.sf2')"
    parent = subprocess.Popen([sys.executable, "-c", code, str(out)], env=env)
    pid_file = tmp_path / "x.wav.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    assert _alive(pid)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the renderer outlived the process that started it"


def test_the_report_records_the_music21_whose_corpus_it_read(tmp_path, monkeypatch):
    import music21
    monkeypatch.setenv("PATH", _fake_fluidsynth(tmp_path, "true"))
    monkeypatch.setattr(corpus, "find_soundfont", lambda: "/x.sf2")
    monkeypatch.setattr(corpus, "list_works", lambda seed, max_works: [])
    out = tmp_path / "c"
    out.mkdir()
    corpus.build_corpus(corpus.CorpusOptions(out_dir=str(out)), log=lambda *_: None)
    report = json.loads((out / "corpus_report.json").read_text())
    assert report["music21"] == music21.__version__ and report["train"]["clips"] == 0
