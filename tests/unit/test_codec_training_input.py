"""The codec training input pipeline: corpus listing, held-out split, random crops, resumable
iterator, fixed held-out batches; and the codec training configs."""
import importlib.util
import json
from pathlib import Path

import grain
import numpy as np
import pytest
import soundfile as sf

from magnet_jax.codec_training import input_pipeline as ip

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def wavs(tmp_path):
    paths = []
    for i, seconds in enumerate([1.0, 0.3, 2.0]):
        p = tmp_path / f"a{i}.wav"
        sf.write(p, (0.1 * (i + 1) * np.ones(int(seconds * 8000))).astype(np.float32), 8000)
        paths.append(p)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({"path": p.name}) for p in paths) + "\n")
    return tmp_path


def test_listing_split_and_errors(wavs):
    from_dir = ip.list_files(audio_dir=str(wavs))
    assert [Path(p).name for p in from_dir] == ["a0.wav", "a1.wav", "a2.wav"]      # notes.txt left out
    assert [Path(p).name for p in ip.list_files(manifest=str(wavs / "m.jsonl"))] == ["a0.wav", "a1.wav", "a2.wav"]
    train, held = ip.split_files(from_dir, 0.1)
    assert len(train) == 2 and Path(held[0]).name == "a2.wav"
    assert ip.split_files(from_dir[:1], 0.5) == (from_dir[:1], [])
    with pytest.raises(ValueError, match="exactly one"):
        ip.list_files()


def _unusable_corpus(d: Path) -> Path:
    """NaN, text, 0-byte, truncated and 0-frame files with audio extensions (issue 32)."""
    d.mkdir()
    sf.write(d / "nan.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    (d / "text.wav").write_text("not audio at all")
    (d / "zero.wav").write_bytes(b"")
    sf.write(d / "trunc.wav", np.ones(8000, np.float32) * 0.1, 8000)
    (d / "trunc.wav").write_bytes((d / "trunc.wav").read_bytes()[:2000])
    sf.write(d / "noframes.wav", np.zeros(0, np.float32), 8000)
    return d


def test_a_corpus_with_no_usable_audio_is_refused(tmp_path):
    d = _unusable_corpus(tmp_path / "bad")
    with pytest.raises(ip.CorpusError, match="no usable audio .* all 5 inputs unusable") as e:
        ip.list_files(audio_dir=str(d))
    for reason in ("empty", "non_finite", "truncated", "unreadable"):
        assert reason in str(e.value)
    sf.write(d / "good.wav", np.ones(8000, np.float32) * 0.1, 8000)
    assert [Path(p).name for p in ip.list_files(audio_dir=str(d))] == ["good.wav"]   # the rest accounted, left out


def test_crops_padding_and_resumable_iterator(wavs):
    paths = ip.list_files(audio_dir=str(wavs))
    ds = ip.make_dataset(paths, sample_rate=8000, channels=1, segment=4000, batch_size=2, seed=3)
    it = iter(ds)
    first = [next(it) for _ in range(3)]
    assert first[0].shape == (2, 1, 4000) and first[0].dtype == np.float32
    # a 0.3 s file is zero-padded; every crop is constant at its file's level
    levels = {round(float(b[0, 0]), 3) for batch in first for b in batch}
    assert levels <= {0.1, 0.2, 0.3}
    state = it.get_state()
    after = [next(it) for _ in range(2)]
    it2 = iter(ds)
    it2.set_state(state)
    np.testing.assert_array_equal(np.stack(after), np.stack([next(it2) for _ in range(2)]))
    assert isinstance(ds, grain.IterDataset)


def test_held_out_batches_are_fixed(wavs):
    paths = ip.list_files(audio_dir=str(wavs))
    a = ip.eval_batches(paths, sample_rate=8000, channels=1, segment=4000, batch_size=2, max_batches=3)
    b = ip.eval_batches(paths, sample_rate=8000, channels=1, segment=4000, batch_size=2, max_batches=3)
    assert len(a) == 3 and all(x.shape == (2, 1, 4000) for x in a)   # 2 + 1 + 4 crops -> 3 full batches
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    short = [x for batch in a for x in batch if abs(float(x[0, 0]) - 0.2) < 1e-3]
    assert short and float(short[0][0, -1]) == 0.0                      # the 0.3 s clip, zero-padded
    # round-robin over the files: the first batch already holds crops of two different files (levels differ)
    first = sorted(round(float(x[0, 0]), 3) for x in a[0])
    assert len(set(first)) == 2, first


def _configs():
    spec = importlib.util.spec_from_file_location("codec_cfg", ROOT / "configs" / "codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_configs_have_audiocraft_shapes_and_defaults():
    m = _configs()
    music, audio = m.get_config("encodec_musicgen_32khz"), m.get_config("encodec_audiogen_16khz")
    assert (music.model.sample_rate, tuple(music.model.ratios), music.model.n_filters, music.model.n_q,
            music.model.bins) == (32000, (8, 5, 4, 4), 64, 4, 2048)
    assert (audio.model.sample_rate, tuple(audio.model.ratios)) == (16000, (8, 5, 4, 2))
    assert dict(music.losses) == {"adv": 4.0, "feat": 4.0, "l1": 0.1, "msspec": 2.0, "mrstft": 0.0}
    assert music.model.arch == "seanet" and music.rvq.threshold_ema_dead_code == 2.0
    bundled = m.get_config("bundled")   # the frame codec (not audiocraft), trained with the linear-STFT loss
    assert bundled.model.arch == "frame" and bundled.losses.mrstft > 0 and bundled.losses.adv == 0
    # the dead-code threshold is below the average uses per code and step (16 x 50 vectors for 1024 codes)
    assert bundled.rvq.threshold_ema_dead_code < bundled.batch_size * 50 / bundled.model.bins
    assert m.get_config("bundled_seanet").model.arch == "seanet"
    assert (music.optim.lr, music.optim.b1, music.optim.b2) == (3e-4, 0.5, 0.9)
    free = m.get_config("tiny_gan_free")
    assert free.losses.adv == 0 and free.losses.feat == 0 and free.losses.msspec == 2.0
    with pytest.raises(ValueError, match="unknown codec config"):
        m.get_config("huge")
