"""Offline tokenization (magnet_jax.data.tokenize): corpus -> EnCodec codes -> TFDS ArrayRecord.

A small random-weight, non-causal (reflect-padded) transformers EncodecModel is saved with
``save_pretrained`` and loaded through ``magnet_jax.codec.load_encodec``; the corpus mixes tones,
chords and noise in wav / flac / ogg / mp3 at several rates and channel counts, with sidecars,
plus deliberately broken inputs. Checks: the report lists exactly the broken inputs as skipped
(with the right reason), the dataset reads back without TensorFlow, every example's codes equal a
direct encode of the same resampled segment (and the PyTorch model's codes), Beam (DirectRunner)
gives the same examples, re-runs are no-ops, the codec record refuses other codecs, and the CLI.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
soxr = pytest.importorskip("soxr")
tfds = pytest.importorskip("tensorflow_datasets")

from magnet_jax.data import tokenize as tok  # noqa: E402
from magnet_jax.data.audio_io import LevelOptions  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000  # codec rate
OPTS = tok.TokenizeOptions(segment_seconds=1.0, min_seconds=0.5, length_quantum_seconds=0.5, batch_size=4,
                           level=LevelOptions(silence_db=-60.0), read_workers=2)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.reference.encodec_ref import hf_model
    model = hf_model(seed=3, sampling_rate=SR, audio_channels=1, upsampling_ratios=[8, 4], num_filters=8,
                     hidden_size=16, num_lstm_layers=1, codebook_size=64, target_bandwidths=[12.0],
                     use_causal_conv=False, pad_mode="reflect", num_residual_layers=1, normalize=False)
    d = tmp_path_factory.mktemp("codec") / "tiny_encodec"
    model.save_pretrained(str(d))
    return str(d), model


@pytest.fixture(scope="module")
def codec(codec_dir):
    from magnet_jax.codec import load_encodec
    return load_encodec(codec_dir[0])


def _sig(kind, sr, seconds, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    out = []
    for c in range(channels):
        if kind == "tone":
            x = 0.4 * np.sin(2 * np.pi * (220 + 70 * c) * t)
        elif kind == "chord":
            x = sum(0.2 * np.sin(2 * np.pi * f * (1 + 0.01 * c) * t) for f in (261.6, 329.6, 392.0))
        else:
            x = 0.2 * rng.standard_normal(t.shape)
        out.append(x)
    return np.stack(out, 1).astype(np.float32)  # [N, C] for soundfile


# name -> (expected segments) for the good files; name -> reason tag for the broken ones
GOOD = {"tone_16k_mono.wav": 2, "chord_44k_stereo.flac": 2, "noise_22k_6ch.wav": 1, "tone_8k.flac": 1,
        "chord_48k_stereo.ogg": 1, "half_silent.wav": 1, "hot_float.wav": 1, "tone_32k.mp3": 1}
BROKEN = {"missing.wav": "missing", "empty.wav": "empty", "not_audio.wav": "unreadable",
          "truncated.wav": "truncated", "truncated.flac": "truncated", "silence.wav": "silent",
          "short.wav": "too_short", "nan.wav": "non_finite", "header_only.wav": "empty"}


def _write_corpus(d):
    os.makedirs(d / "sub", exist_ok=True)
    sf.write(d / "tone_16k_mono.wav", _sig("tone", 16000, 2.3), 16000)
    sf.write(d / "sub" / "chord_44k_stereo.flac", _sig("chord", 44100, 1.7, 2), 44100)
    sf.write(d / "noise_22k_6ch.wav", _sig("noise", 22050, 1.0, 6, seed=1), 22050, subtype="FLOAT")
    sf.write(d / "tone_8k.flac", _sig("tone", 8000, 0.6), 8000)
    sf.write(d / "chord_48k_stereo.ogg", _sig("chord", 48000, 1.2, 2), 48000)
    half = _sig("chord", 16000, 2.0)
    half[16000:] = 0.0
    sf.write(d / "half_silent.wav", half, 16000)
    sf.write(d / "hot_float.wav", 3.0 * _sig("noise", 24000, 1.0, seed=2), 24000, subtype="FLOAT")
    sf.write(d / "tone_32k.mp3", _sig("tone", 32000, 1.1), 32000)
    # broken
    open(d / "empty.wav", "wb").close()
    with open(d / "not_audio.wav", "w") as fh:
        fh.write("this is not a RIFF file\n")
    for ext in ("wav", "flac"):
        sf.write(d / f"full.{ext}", _sig("noise", 16000, 2.0, seed=4), 16000)
        b = (d / f"full.{ext}").read_bytes()
        (d / f"truncated.{ext}").write_bytes(b[: len(b) // 2])
        os.remove(d / f"full.{ext}")
    sf.write(d / "silence.wav", np.zeros((24000, 1), np.float32), 16000)
    sf.write(d / "short.wav", _sig("tone", 16000, 0.3), 16000)
    bad = _sig("tone", 16000, 1.0)
    bad[100] = np.nan
    bad[200] = np.inf
    sf.write(d / "nan.wav", bad, 16000, subtype="FLOAT")
    sf.write(d / "header_only.wav", np.zeros((0, 1), np.float32), 16000)
    # sidecars
    with open(d / "tone_16k_mono.json", "w") as fh:
        json.dump({"description": "a sine at 220 Hz", "title": "Tone", "genre": "test", "moods": ["calm", "pure"],
                   "keywords": "sine, test", "bpm": "120", "key": "A minor"}, fh)
    with open(d / "sub" / "chord_44k_stereo.json", "w") as fh:
        json.dump({"description": "sidecar text", "title": "Chord", "bpm": None}, fh)
    with open(d / "tone_8k.json", "w") as fh:
        fh.write("{not json")  # malformed sidecar: clip kept, no metadata


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    _write_corpus(d)
    names = {"tone_16k_mono.wav": "tone_16k_mono.wav", "chord_44k_stereo.flac": "sub/chord_44k_stereo.flac"}
    lines = []
    for n in list(GOOD) + list(BROKEN):
        line = {"path": names.get(n, n), "duration": 1.0, "sample_rate": 16000}
        if n == "chord_44k_stereo.flac":
            line["description"] = "manifest text"  # manifest wins over the sidecar
        lines.append(json.dumps(line))
    lines.insert(3, json.dumps({"path": str(d / "tone_16k_mono.wav")}))  # duplicate (absolute form)
    lines.insert(5, "{broken json")
    lines.insert(6, json.dumps({"no_path": 1}))
    lines.insert(7, "")
    (d / "train.jsonl").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def built(corpus, codec, codec_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfds")
    res = tok.tokenize_corpus(codec=codec, codec_path=codec_dir[0], manifest=str(corpus / "train.jsonl"),
                              data_dir=str(out), name="tiny_codes", options=OPTS)
    return out, res


# ----------------------------------------------------------------------------- helpers
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
def test_segment_policy():
    hop = 32
    o = tok.TokenizeOptions(segment_seconds=1.0, min_seconds=0.5, length_quantum_seconds=0.5)
    assert tok.plan_segments(int(2.3 * SR), SR, hop, o) == [(0, SR), (SR, SR)]          # 0.3 s tail dropped
    assert tok.plan_segments(int(1.7 * SR), SR, hop, o) == [(0, SR), (SR, SR // 2)]     # 0.7 -> 0.5 kept
    assert tok.plan_segments(int(0.49 * SR), SR, hop, o) == []                          # too short
    for off, n in tok.plan_segments(int(7.77 * SR), SR, hop, o):
        assert off % hop == 0 and n % hop == 0


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
    torch = pytest.importorskip("torch")
    checked_torch = False
    for ex in exs:
        path = _txt(ex["path"])
        codes = ex["codes"]
        assert codes.dtype == np.int16 and codes.shape == (k, ex["num_frames"])
        ref = _reference_audio(path)
        a = int(ex["offset_frames"]) * hop
        seg = ref[:, a: a + int(ex["num_frames"]) * hop]
        assert seg.shape[1] == int(ex["num_frames"]) * hop
        assert abs(float(ex["offset_seconds"]) - a / SR) < 1e-6
        assert abs(float(ex["duration_seconds"]) - seg.shape[1] / SR) < 1e-6
        direct = np.asarray(codec.encode(seg[None]))[0]
        np.testing.assert_array_equal(codes, direct, err_msg=f"{path} @ {a}")
        assert int(ex["sample_rate"]) == sf.info(path).samplerate
        if not checked_torch and os.path.basename(path) == "chord_44k_stereo.flac":
            with torch.no_grad():
                r = codec_dir[1].encode(torch.from_numpy(seg[None]), None, 12.0).audio_codes[0, 0].numpy()
            np.testing.assert_array_equal(codes, r)
            checked_torch = True
    assert checked_torch
    by_name = {}
    for ex in exs:
        by_name.setdefault(os.path.basename(_txt(ex["path"])), []).append(ex)
    t = by_name["tone_16k_mono.wav"][0]
    assert (_txt(t["description"]), _txt(t["title"]), _txt(t["moods"]), _txt(t["keywords"]), _txt(t["key"]),
            float(t["bpm"])) == ("a sine at 220 Hz", "Tone", "calm, pure", "sine, test", "A minor", 120.0)
    c = by_name["chord_44k_stereo.flac"][0]
    assert _txt(c["description"]) == "manifest text" and _txt(c["title"]) == "Chord" and np.isnan(c["bpm"])
    assert _txt(by_name["tone_8k.flac"][0]["description"]) == "" and np.isnan(by_name["tone_8k.flac"][0]["bpm"])
    assert sorted(int(e["offset_frames"]) for e in by_name["tone_16k_mono.wav"]) == [0, SR // hop]
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
    pytest.importorskip("apache_beam")
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
    sf.write(d / "a.wav", _sig("chord", 22050, 1.2, 2), 22050)
    sf.write(d / "b.flac", _sig("tone", 16000, 0.2), 16000)
    (d / "b.json").write_text(json.dumps({"description": "x"}))
    (d / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    stale = out / "dir_codes" / "incomplete.ABCDEF_1.0.0"   # left by a killed earlier run
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
    assert len(src) == 1 and src[0]["codes"].shape == (4, 500)
    # second run: no-op, summary says so
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "reused existing dataset" in p.stdout, p.stderr[-3000:]
