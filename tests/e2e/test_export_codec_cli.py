"""tools/export_codec.py on a real training workdir (tools/train_codec.py, tiny_gan_free, 2 steps): both
formats are written, our loader reads them back with the codes of the EMA generator, and user errors
exit 2 with one line."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from magnet_jax.data import tokenize as tok
from magnet_jax.data.audio_io import LevelOptions

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/codec.py:tiny_gan_free"


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = tmp_path_factory.mktemp("export_cli")
    audio = base / "audio"
    audio.mkdir()
    t = np.arange(8000) / 8000
    for i, f in enumerate((220.0, 330.0, 440.0, 550.0, 660.0)):
        sf.write(audio / f"tone{i}.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), 8000)
    wd = base / "wd"
    r = _run("tools/train_codec.py", f"--config={CONFIG}", f"--workdir={wd}", f"--config.audio_dir={audio}",
             "--config.total_steps=2", "--config.eval_batches=1", "--noprogress")
    assert r.returncode == 0, r.stderr[-3000:]
    return wd


@pytest.mark.parametrize("fmt", ["transformers", "audiocraft"])
def test_export_cli_round_trip(workdir, tmp_path, fmt):
    out = tmp_path / fmt
    r = _run("tools/export_codec.py", f"--workdir={workdir}", f"--out={out}", f"--format={fmt}", f"--config={CONFIG}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wrote" in r.stdout
    from configs.codec import get_config
    from magnet_jax.codec import export_inference_codec
    from magnet_jax.codec_training.export import load_trained
    from magnet_jax.convert.encodec import load_encodec
    ours = export_inference_codec(*load_trained(get_config("tiny_gan_free"), workdir))
    back = load_encodec(out)
    wav = (0.3 * np.sin(2 * np.pi * 300 * np.arange(4001) / 8000)).astype(np.float32)[None, None]
    np.testing.assert_array_equal(np.asarray(back.encode(wav)), np.asarray(ours.encode(wav)))
    assert np.abs(np.asarray(back.decode(ours.encode(wav))) - np.asarray(ours.decode(ours.encode(wav)))).max() < 1e-5
    # the tokenizer reads the export too: its codes of a 1 s file are the codec's codes of that file
    opts = tok.TokenizeOptions(segment_seconds=1.0, overlap_seconds=0.0, min_seconds=0.5, batch_size=2,
                               level=LevelOptions(silence_db=-60.0))
    res = tok.tokenize_corpus(codec=str(out), audio_dir=str(workdir.parent / "audio"), data_dir=str(tmp_path / "tfds"),
                              name="export_codes", options=opts)
    src = tfds.builder_from_directory(res.dataset_dir).as_data_source("train")
    assert len(src) == 5
    for ex in (src[i] for i in range(len(src))):
        path = ex["path"].decode() if isinstance(ex["path"], bytes) else ex["path"]
        audio, _ = sf.read(path, dtype="float32")
        np.testing.assert_array_equal(ex["codes"], np.asarray(back.encode(audio[None, None]))[0])


def test_export_cli_user_errors(tmp_path):
    r = _run("tools/export_codec.py", "--help")
    assert r.returncode == 0 and "--format" in r.stdout
    r = _run("tools/export_codec.py", f"--workdir={tmp_path}", f"--out={tmp_path / 'o'}")
    assert r.returncode == 2 and "no checkpoints/ folder" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "checkpoints").mkdir()
    r = _run("tools/export_codec.py", f"--workdir={tmp_path}", f"--out={tmp_path / 'o'}")
    assert r.returncode == 2 and "config" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- issue 32: nothing lost
def _one_error(r, tool):
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith(f"{tool}: error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return errors[0]


def test_trainer_records_its_config_and_export_reads_it(workdir, tmp_path):
    import json
    assert json.loads((workdir / "config.json").read_text())["model"]["dimension"] == 16
    out = tmp_path / "codec"
    r = _run("tools/export_codec.py", f"--workdir={workdir}", f"--out={out}")        # no --config: config.json
    assert r.returncode == 0, r.stderr[-3000:]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = _run("tools/export_codec.py", f"--workdir={workdir}", f"--out={out}", "--format=audiocraft")
    assert "--overwrite" in _one_error(r, "export_codec.py")             # a codec is there: not replaced
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    r = _run("tools/export_codec.py", f"--workdir={workdir}", f"--out={out}", "--overwrite")
    assert r.returncode == 0, r.stderr[-3000:]
    (tmp_path / "file").write_text("x")
    assert "is a file" in _one_error(_run("tools/export_codec.py", f"--workdir={workdir}",
                                          f"--out={tmp_path / 'file'}"), "export_codec.py")


def test_another_config_is_named_not_called_damage(workdir, tmp_path):
    steps = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    r = _run("tools/export_codec.py", f"--workdir={workdir}", f"--out={tmp_path / 'o'}", f"--config={CONFIG}",
             "--config.model.dimension=8")
    line = _one_error(r, "export_codec.py")
    assert "model.dimension: 16 -> 8" in line and "intact" in line and "damaged" not in r.stderr
    r = _run("tools/train_codec.py", f"--config={CONFIG}", f"--workdir={workdir}", "--config.model.dimension=8",
             f"--config.audio_dir={workdir.parent / 'audio'}", "--config.total_steps=3", "--noprogress")
    line = _one_error(r, "train_codec.py")
    assert "model.dimension: 16 -> 8" in line and "move" not in line and "damaged" not in r.stderr
    assert r.stderr.count("Traceback") == 0 and len(r.stderr.splitlines()) < 40
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == steps
    assert not (workdir / "checkpoints_damaged").exists()


def test_trainer_refuses_a_corpus_with_no_usable_audio(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    sf.write(bad / "nan.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    (bad / "text.wav").write_text("not audio")
    (bad / "zero.wav").write_bytes(b"")
    r = _run("tools/train_codec.py", f"--config={CONFIG}", f"--workdir={tmp_path / 'wd'}",
             f"--config.audio_dir={bad}", "--config.total_steps=2", "--noprogress")
    assert "no usable audio" in _one_error(r, "train_codec.py")
    assert not (tmp_path / "wd" / "checkpoints").exists()
    (tmp_path / "wdfile").write_text("x")
    r = _run("tools/train_codec.py", f"--config={CONFIG}", f"--workdir={tmp_path / 'wdfile'}",
             f"--config.audio_dir={bad}", "--noprogress")
    assert "is a file" in _one_error(r, "train_codec.py")
