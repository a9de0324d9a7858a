"""Audio I/O (magnet_jax.data.audio_io): decode + validate, channel mapping, resampling, level policy."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from magnet_jax.data import audio_io as A
from tests.helpers import signal


def test_read_roundtrip_float_and_pcm(tmp_path):
    x = signal("chord", 16000, 0.5, 2)
    sf.write(tmp_path / "f.wav", x, 16000, subtype="FLOAT")
    wav, sr = A.read_audio(tmp_path / "f.wav")
    assert sr == 16000 and wav.shape == (2, 8000) and wav.dtype == np.float32
    np.testing.assert_array_equal(wav, x.T)
    sf.write(tmp_path / "p.flac", x, 16000)  # 16-bit PCM: within one LSB
    wav, _ = A.read_audio(tmp_path / "p.flac")
    assert np.abs(wav - x.T).max() <= 1 / 2 ** 15


@pytest.mark.parametrize("setup, reason", [
    (lambda p: None, A.MISSING),
    (lambda p: open(p, "wb").close(), A.EMPTY),
    (lambda p: p.write_text("not a RIFF file"), A.UNREADABLE),
])
def test_read_errors_have_stable_reasons(tmp_path, setup, reason):
    p = tmp_path / "x.wav"
    setup(p)
    with pytest.raises(A.AudioError) as e:
        A.read_audio(p)
    assert e.value.reason == reason and e.value.report_reason().startswith(reason + ": ")


def test_truncated_wav_is_refused(tmp_path):
    sf.write(tmp_path / "full.wav", signal("noise", 16000, 1.0), 16000)
    b = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(b[: len(b) // 2])
    with pytest.raises(A.AudioError, match="truncated"):
        A.read_audio(tmp_path / "cut.wav")


def test_convert_channels():
    st = np.stack([np.ones(4, np.float32), 3 * np.ones(4, np.float32)])
    np.testing.assert_array_equal(A.convert_channels(st, 1), 2 * np.ones((1, 4)))      # mean
    np.testing.assert_array_equal(A.convert_channels(st[:1], 2), np.ones((2, 4)))      # duplicated
    assert A.convert_channels(np.zeros((6, 4), np.float32), 2).shape == (2, 4)         # first channels
    with pytest.raises(A.AudioError):
        A.convert_channels(np.zeros((2, 4), np.float32), 3)


def test_resample_keeps_a_tone():
    sr_in, sr_out = 44100, 16000
    x = signal("tone", sr_in, 1.0).T
    y = A.resample(x, sr_in, sr_out)
    assert y.shape == (1, sr_out) and y.dtype == np.float32
    ref = signal("tone", sr_out, 1.0).T
    assert np.abs(y[:, 1000:-1000] - ref[:, 1000:-1000]).max() < 1e-3
    assert A.resample(x, sr_in, sr_in) is x


def test_level_policy():
    loud = np.array([[0.5, -2.0, 1.0]], np.float32)
    np.testing.assert_allclose(A.apply_level(loud, A.LevelOptions()), loud / 2.0)   # clipping guard: rescaled
    quiet = np.array([[0.1, -0.1]], np.float32)
    np.testing.assert_array_equal(A.apply_level(quiet, A.LevelOptions()), quiet)      # no normalisation
    peak = A.apply_level(quiet, A.LevelOptions(normalize="peak", peak_db=-6.0))
    assert abs(A.db(float(np.abs(peak).max())) + 6.0) < 1e-4
    rms = A.apply_level(quiet, A.LevelOptions(normalize="rms", rms_db=-30.0))
    assert abs(A.rms_db(rms) + 30.0) < 1e-4
    with pytest.raises(ValueError):
        A.LevelOptions(normalize="loud")


def test_load_audio_rejects_non_finite_and_silent(tmp_path):
    x = signal("tone", 16000, 0.5)
    x[10] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(A.AudioError, match="non_finite"):
        A.load_audio(tmp_path / "nan.wav", 16000, 1)
    sf.write(tmp_path / "quiet.wav", 1e-5 * signal("tone", 16000, 0.5), 16000, subtype="FLOAT")
    with pytest.raises(A.AudioError, match="silent"):
        A.load_audio(tmp_path / "quiet.wav", 16000, 1)
    wav, src_sr, src_ch = A.load_audio(tmp_path / "quiet.wav", 8000, 2, level=A.LevelOptions(silence_db=None))
    assert wav.shape == (2, 4000) and (src_sr, src_ch) == (16000, 1)
