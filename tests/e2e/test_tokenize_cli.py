"""Offline tokenization end to end (magnet_jax.data.tokenize): corpus -> EnCodec codes -> TFDS ArrayRecord.

A small random-weight transformers EncodecModel is saved with ``save_pretrained`` and loaded through
``magnet_jax.convert.encodec.load_encodec``; the corpus (tests/tokenize_corpus.py) mixes tones, chords and noise in
wav / flac / ogg / mp3 at several rates and channel counts, with sidecars, plus deliberately broken inputs.
Checks: the report lists exactly the broken inputs as skipped (with the right reason), the dataset reads
back without TensorFlow, every example's codes equal a direct encode of the same resampled segment, Beam
(DirectRunner) gives the same examples, re-runs are no-ops, the codec record refuses other codecs, the CLI.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
import tensorflow_datasets as tfds

from magnet_jax.data import tokenize as tok
from magnet_jax.data.audio_io import LevelOptions
from tests.helpers import ROOT, signal
from tests.tokenize_corpus import BROKEN, GOOD, SR, tiny_codec_dir, write_tokenize_corpus, write_tokenize_manifest

OPTS = tok.TokenizeOptions(segment_seconds=1.0, overlap_seconds=0.0, min_seconds=0.5, length_quantum_seconds=0.5,
                           batch_size=4,
                           level=LevelOptions(silence_db=-60.0), read_workers=2)


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    return tiny_codec_dir(tmp_path_factory.mktemp("codec") / "tiny_encodec")


@pytest.fixture(scope="module")
def codec(codec_dir):
    from magnet_jax.convert.encodec import load_encodec
    return load_encodec(codec_dir[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    write_tokenize_corpus(d)
    write_tokenize_manifest(d)
    return d


@pytest.fixture(scope="module")
def built(corpus, codec, codec_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfds")
    res = tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=str(corpus / "train.jsonl"),
                              data_dir=str(out), name="tiny_codes", options=OPTS)
    return out, res


def _reference_audio(path):
    """Independent reimplementation of the documented read -> mono -> soxr HQ -> clip-guard path."""
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    x = data.T.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    if sr != SR:
        x = soxr.resample(x.T, sr, SR, quality="HQ").T.astype(np.float32)
    peak = float(np.abs(x).max())
    if peak > 1:
        x = x * np.float32(1 / peak)
    return x


def _examples(src):
    return [src[i] for i in range(len(src))]


def _txt(v):
    return v.decode() if isinstance(v, bytes) else v


# ----------------------------------------------------------------------------- tests
def test_report_accounts_for_every_input(built, corpus):
    _, res = built
    rep = json.loads(open(res.report_path).read())
    assert res.report_path == os.path.join(str(built[0]), tok.REPORT_FILENAME)
    kept = {os.path.basename(e["path"]): e for e in rep["kept"]}
    skipped = {e["path"]: e["reason"] for e in rep["skipped"]}
    assert {k: e["segments"] for k, e in kept.items()} == GOOD
    assert kept["half_silent.wav"]["dropped_silent_segments"] == 1
    # exactly the broken files, with their reason, paths as the manifest resolves them
    expect = {str(corpus / n): r for n, r in BROKEN.items()}
    manifest = str(corpus / "train.jsonl")
    malformed = {p: r for p, r in skipped.items() if p.startswith(manifest + ":")}
    dup = {p: r for p, r in skipped.items() if r.startswith("duplicate")}
    assert {p: r.split(":")[0] for p, r in skipped.items() if p not in malformed and p not in dup} == expect
    assert sorted(malformed) == [f"{manifest}:6", f"{manifest}:7"]
    assert all(r.startswith("malformed_manifest_line") for r in malformed.values())
    assert list(dup) == [str(corpus / "tone_16k_mono.wav")]
    assert all(len(r.split(": ", 1)[1]) > 3 for r in skipped.values())  # every reason has details
    n_inputs = len(GOOD) + len(BROKEN) + 3
    assert rep["summary"]["inputs"] == n_inputs == len(rep["kept"]) + len(rep["skipped"])
    assert rep["summary"]["segments"] == sum(GOOD.values())
    assert kept["chord_44k_stereo.flac"]["path"] == str(corpus / "sub" / "chord_44k_stereo.flac")
    # the same report is stored inside the dataset
    assert json.load(open(os.path.join(res.dataset_dir, tok.REPORT_FILENAME)))["kept"] == rep["kept"]


def test_read_back_and_codes_equal_direct_encode(built, codec, codec_dir):
    out, res = built
    src = tfds.data_source("tiny_codes", data_dir=str(out), split="train")
    src2 = tfds.builder_from_directory(res.dataset_dir).as_data_source("train")
    exs = _examples(src)
    assert len(exs) == len(src2) == sum(GOOD.values())
    hop, k = codec.hop_length, codec.num_codebooks
    for ex in exs:
        path = _txt(ex["path"])
        codes = ex["codes"]
        assert codes.dtype == np.int16 and codes.shape == (k, ex["num_frames"])
        ref = _reference_audio(path)
        a = int(ex["offset_frames"]) * hop
        seg = ref[:, a: a + int(ex["num_frames"]) * hop]
        if ref.shape[1] > SR:  # segments of long files are exactly 1 s
            assert seg.shape[1] == int(ex["num_frames"]) * hop == SR
        else:  # a short file: encoded whole, zero-padded to a multiple of 0.5 s, codes cut to its frames
            assert a == 0 and int(ex["num_frames"]) == -(-ref.shape[1] // hop)
            seg = np.pad(ref, ((0, 0), (0, min(SR, -(-ref.shape[1] // (SR // 2)) * (SR // 2)) - ref.shape[1])))
        assert abs(float(ex["offset_seconds"]) - a / SR) < 1e-6
        assert abs(float(ex["duration_seconds"]) - int(ex["num_frames"]) * hop / SR) < 1e-6
        direct = np.asarray(codec.encode(seg[None]))[0][:, :int(ex["num_frames"])]
        np.testing.assert_array_equal(codes, direct, err_msg=f"{path} @ {a}")
        assert int(ex["sample_rate"]) == sf.info(path).samplerate
    from magnet_jax.data.segment_index import load_index
    idx = load_index(res.dataset_dir, src2)   # written by the tokenizer, in the source's example order
    assert [(idx.paths[idx.file[i]], idx.offset[i], idx.frames[i]) for i in range(len(exs))] == [
        (_txt(e["path"]), int(e["offset_frames"]), int(e["num_frames"])) for e in exs]
    by_name = {}
    for ex in exs:
        by_name.setdefault(os.path.basename(_txt(ex["path"])), []).append(ex)
    t = by_name["tone_16k_mono.wav"][0]
    assert (_txt(t["description"]), _txt(t["title"]), _txt(t["moods"]), _txt(t["keywords"]), _txt(t["key"]),
            float(t["bpm"])) == ("a sine at 220 Hz", "Tone", "calm, pure", "sine, test", "A minor", 120.0)
    c = by_name["chord_44k_stereo.flac"][0]
    assert _txt(c["description"]) == "manifest text" and _txt(c["title"]) == "Chord" and np.isnan(c["bpm"])
    assert _txt(by_name["tone_8k.flac"][0]["description"]) == "" and np.isnan(by_name["tone_8k.flac"][0]["bpm"])
    assert sorted(int(e["offset_frames"]) for e in by_name["tone_16k_mono.wav"]) == [
        0, SR // hop, (int(2.3 * SR) - SR) // hop]
    assert int(by_name["half_silent.wav"][0]["offset_frames"]) == 0


def test_codec_record_and_compatibility(built, codec):
    out, res = built
    info = tok.read_codec_info(str(out))
    assert info == tok.read_codec_info(res.dataset_dir) == tok.read_codec_info(
        tfds.builder_from_directory(res.dataset_dir))
    assert (info["sample_rate"], info["frame_rate"], info["num_codebooks"], info["cardinality"], info["channels"]) == (
        SR, 500.0, 4, 64, 1)
    tok.check_codec_compatible(info, codec)
    tok.check_codec_compatible(str(out), {"num_codebooks": 4, "cardinality": 64})
    from magnet_jax.configs import get_config
    from magnet_jax.model.config import MagnetConfig
    with pytest.raises(tok.CodecMismatchError, match="cardinality"):
        tok.check_codec_compatible(info, MagnetConfig(n_q=4, card=2048, dim=64, num_heads=4, num_layers=1))
    with pytest.raises(tok.CodecMismatchError, match="sample_rate"):
        tok.check_codec_compatible(info, get_config("tiny"))
    import jax
    from flax import nnx
    leaves, treedef = jax.tree_util.tree_flatten(nnx.state(codec.net))
    bumped = jax.tree_util.tree_unflatten(treedef, [leaves[0] + 1.0] + leaves[1:])
    g, _ = nnx.split(codec.net)
    from magnet_jax.codec import Encodec
    changed = Encodec(codec.config, nnx.merge(g, bumped))
    with pytest.raises(tok.CodecMismatchError, match="fingerprint"):
        tok.check_codec_compatible(info, changed)


def test_rerun_is_noop_and_reports_existing(built, corpus, codec, codec_dir, tmp_path):
    out, res = built
    stamp = os.path.getmtime(os.path.join(res.dataset_dir, "dataset_info.json"))
    rep_path = str(tmp_path / "again.json")
    again = tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=str(corpus / "train.jsonl"),
                                data_dir=str(out), name="tiny_codes", options=OPTS, report_path=rep_path)
    assert again.reused and again.dataset_dir == res.dataset_dir
    assert os.path.getmtime(os.path.join(res.dataset_dir, "dataset_info.json")) == stamp
    rep = json.load(open(rep_path))
    assert rep["kept"] == res.report["kept"] and rep["skipped"] == res.report["skipped"]
    assert rep["summary"]["reused"] is True
    # --overwrite rebuilds
    again = tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=str(corpus / "train.jsonl"),
                                data_dir=str(out), name="tiny_codes", options=OPTS, overwrite=True)
    assert not again.reused and again.report["kept"] == res.report["kept"]
    assert len(tfds.builder_from_directory(res.dataset_dir).as_data_source("train")) == sum(GOOD.values())


def test_beam_direct_runner_matches(built, corpus, codec, codec_dir, tmp_path):
    out, res = built
    bout = tmp_path / "beam"
    bres = tok.tokenize_corpus(
        codec=codec, codec_path=codec_dir[0], manifest=str(corpus / "train.jsonl"), data_dir=str(bout),
        name="tiny_codes", options=OPTS,
        beam_options=["--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"])
    assert bres.report["kept"] == res.report["kept"]
    assert bres.report["skipped"] == res.report["skipped"]
    assert not (bout / "_tokenize_work").exists()  # input shards and report parts removed
    key = lambda e: (_txt(e["path"]), int(e["offset_frames"]))  # noqa: E731
    a = {key(e): e for e in _examples(tfds.builder_from_directory(res.dataset_dir).as_data_source("train"))}
    b = {key(e): e for e in _examples(tfds.builder_from_directory(bres.dataset_dir).as_data_source("train"))}
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k]["codes"], b[k]["codes"])
        assert _txt(a[k]["description"]) == _txt(b[k]["description"])
    assert tok.read_codec_info(bres.dataset_dir) == tok.read_codec_info(res.dataset_dir)


def test_cli_audio_dir(codec_dir, tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "a.wav", signal("chord", 22050, 1.2, 2), 22050)
    sf.write(d / "b.flac", signal("tone", 16000, 0.2), 16000)
    (d / "b.json").write_text(json.dumps({"description": "x"}))
    (d / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    stale = out / "dir_codes" / f"incomplete.ABCDEF_{tok.VERSION}"   # left by a killed earlier run
    stale.mkdir(parents=True)
    cmd = [sys.executable, os.path.join(ROOT, "tools", "tokenize_dataset.py"), f"--audio_dir={d}",
           f"--codec={codec_dir[0]}", f"--data_dir={out}", "--name=dir_codes", "--segment_seconds=1",
           "--min_seconds=0.5", "--length_quantum_seconds=0.5", "--batch_size=2", "--noprogress"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "1 kept / 2 skipped of 3 inputs" in p.stdout
    rep = json.load(open(out / "tokenize_report.json"))
    assert [e["path"] for e in rep["kept"]] == [str(d / "a.wav")]
    assert {e["path"]: e["reason"].split(":")[0] for e in rep["skipped"]} == {
        str(d / "b.flac"): "too_short", str(d / "notes.txt"): "unsupported_extension"}
    assert not stale.exists()
    src = tfds.data_source("dir_codes", data_dir=str(out), split="train")
    assert len(src) == 2 and src[0]["codes"].shape == (4, 500)
    # second run: no-op, summary says so
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "reused existing dataset" in p.stdout, p.stderr[-3000:]


# ----------------------------------------------------------------------------- reliability (issue 12)
def _small_corpus(d):
    from tests.helpers import write_corpus
    return str(write_corpus(d, clips=[dict(name="a.wav", wav=signal("chord", 16000, 1.6), sr=16000),
                                      dict(name="b.wav", wav=signal("tone", 16000, 0.7), sr=16000)]))


def test_second_run_does_not_remove_a_live_runs_build(codec, codec_dir, tmp_path):
    from magnet_jax.data.tokenize.lock import BuildLockedError, lock_path
    manifest = _small_corpus(tmp_path / "c")
    out = tmp_path / "out"
    building = out / "two" / f"incomplete.ABCDEF_{tok.VERSION}"   # a live run's in-progress build
    building.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with open(lock_path(str(out), "two", tok.VERSION), "w") as fh:
            json.dump({"pid": holder.pid, "host": __import__("socket").gethostname(), "started": 0.0}, fh)
        with pytest.raises(BuildLockedError, match=f"pid {holder.pid}"):
            tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=manifest, data_dir=str(out),
                                name="two", options=OPTS)
        assert building.exists()
    finally:
        holder.kill()
        holder.wait()
    res = tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=manifest, data_dir=str(out),
                              name="two", options=OPTS)   # the holder is gone: its build is stale now
    assert not building.exists() and res.report["summary"]["kept"] == 2


def test_run_killed_before_the_report_is_finished_by_the_rerun(codec, codec_dir, tmp_path, monkeypatch):
    from magnet_jax.data.tokenize import driver
    manifest = _small_corpus(tmp_path / "c")
    out = tmp_path / "out"

    def killed(dataset_dir):  # the process dies right after TFDS renamed the finished dataset
        raise KeyboardInterrupt
    monkeypatch.setattr(driver, "write_index", killed)
    with pytest.raises(KeyboardInterrupt):
        tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=manifest, data_dir=str(out),
                            name="killed", options=OPTS)
    dataset = out / "killed" / tok.VERSION
    assert (dataset / "dataset_info.json").exists() and not (dataset / tok.REPORT_FILENAME).exists()
    monkeypatch.undo()
    res = tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=manifest, data_dir=str(out),
                              name="killed", options=OPTS)
    assert res.report["summary"]["finished_after_interruption"] is True
    assert [e["segments"] for e in res.report["kept"]] == [2, 1]
    assert json.load(open(dataset / tok.REPORT_FILENAME))["kept"] == res.report["kept"]
    assert (dataset / "segment_index.json").exists()
    again = tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=manifest, data_dir=str(out),
                                name="killed", options=OPTS)
    assert again.reused and again.report["kept"] == res.report["kept"]


def test_cli_manifest_user_errors(codec_dir, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    tool = [sys.executable, os.path.join(ROOT, "tools", "tokenize_dataset.py"), f"--codec={codec_dir[0]}",
            f"--data_dir={tmp_path / 'out'}", "--noprogress"]
    (tmp_path / "empty.jsonl").write_text("\n")
    p = subprocess.run(tool + [f"--manifest={tmp_path / 'empty.jsonl'}"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 2 and "lists no inputs" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    manifest = _small_corpus(tmp_path / "c")
    with open(manifest, "ab") as fh:
        fh.write(b'{"path": "\xff.wav"}\n')          # one undecodable line: skipped and reported, not fatal
    p = subprocess.run(tool + [f"--manifest={manifest}", "--segment_seconds=1", "--overlap_seconds=0"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 kept / 1 skipped of 3 inputs" in p.stdout and "malformed_manifest_line 1" in p.stdout


def test_merge_splits_joins_outputs_and_refuses_another_codec(built, tmp_path):
    """The bundled recipe's join: a split from several tokenizer outputs is their records in order; an input
    tokenized by other codec weights (another fingerprint) is refused by name."""
    from magnet_jax.bundled.splits import merge_splits, split_reports
    out, res = built
    src = _examples(tfds.builder_from_directory(res.dataset_dir).as_data_source("train"))
    twin = tmp_path / "twin"
    shutil.copytree(out, twin)
    dst = merge_splits(tmp_path / "merged", {"train": [out, twin], "valid": twin})
    b = tfds.builder_from_directory(str(dst))
    train, valid = _examples(b.as_data_source("train")), _examples(b.as_data_source("valid"))
    assert len(train) == 2 * len(src) and len(valid) == len(src)
    for got, want in zip(train, src + src):
        np.testing.assert_array_equal(got["codes"], want["codes"])
        assert got["path"] == want["path"]
    assert tok.read_codec_info(str(dst)) == tok.read_codec_info(res.dataset_dir)
    assert [f.name for f in split_reports(dst)] == ["tokenize_report_train.json", "tokenize_report_train_1.json"]
    md = next(twin.rglob("metadata.json"))
    meta = json.loads(md.read_text())
    meta["codec"]["fingerprint"] = "0" * 16
    md.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="another codec"):
        merge_splits(tmp_path / "refused", {"train": [out, twin]})
    assert not (tmp_path / "refused").exists()
