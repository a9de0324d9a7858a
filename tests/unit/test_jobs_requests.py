"""The request checks and clip writing shared by the generate job and the web page (magnet_jax.jobs.requests)."""
import numpy as np
import pytest
import soundfile as sf

from magnet_jax.jobs import requests
from magnet_jax.util.user_input import UserError


def test_text_lines():
    assert requests.text_lines(" calm piano \n\n  rock\r\n") == ["calm piano", "rock"]
    assert requests.text_lines(None) == requests.text_lines(" \n ") == []


@pytest.mark.parametrize("value,message", [
    (float("nan"), "--duration=nan must be a positive number of seconds"),
    (float("inf"), "--duration=inf must be"),
    (0, "--duration=0 must be"),
    (-1.5, "--duration=-1.5 must be"),
    ("ten", "--duration='ten' must be a number of seconds"),
])
def test_duration(value, message):
    assert requests.duration("--duration", None) is None
    assert requests.duration("--duration", 2) == 2.0
    with pytest.raises(UserError, match=message):
        requests.duration("--duration", value)


def test_audio_inputs(tmp_path):
    assert requests.read_audio_input(None, "--prompt_wav") is None and requests.read_audio_input("", "x") is None
    sf.write(str(tmp_path / "ok.wav"), 0.1 * np.ones((800, 2), np.float32), 8000)
    wav, sr = requests.read_audio_input(str(tmp_path / "ok.wav"), "--prompt_wav")
    assert wav.shape == (2, 800) and wav.dtype == np.float32 and sr == 8000
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(UserError, match=r"^the clip \(notes.txt\): .*not a readable audio file.* WAV / FLAC"):
        requests.read_audio_input(str(tmp_path / "notes.txt"), "the clip (notes.txt)")
    bad = np.zeros((800, 1), np.float32)
    bad[5] = np.nan
    sf.write(str(tmp_path / "nan.wav"), bad, 8000, subtype="FLOAT")
    with pytest.raises(UserError, match="holds NaN / inf samples"):
        requests.read_audio_input(str(tmp_path / "nan.wav"), "--infill_wav")


def test_prompt_and_infill_checks():
    clip = (np.zeros((1, 16000), np.float32), 8000)                 # 2 s
    requests.check_prompt(clip, 3.0)
    requests.check_prompt(clip, None)                               # the model's window: the pipeline checks it
    with pytest.raises(UserError, match=r"the audio prompt \(2.0 s\) must be shorter than the duration \(2 s\)"):
        requests.check_prompt(clip, 2.0)
    assert requests.check_infill(clip, 0.5, 1, window_seconds=10) == (0.5, 1.0)
    with pytest.raises(UserError, match="set the infill start and end"):
        requests.check_infill(clip, None, 1.0, window_seconds=10)
    with pytest.raises(UserError, match=r"\[1, 3\) s is outside the 2.00 s clip"):
        requests.check_infill(clip, 1.0, 3.0, window_seconds=10)
    with pytest.raises(UserError, match="infill works within one window: the clip is 2.0 s"):
        requests.check_infill(clip, 0.5, 1.0, window_seconds=1.0)


def test_write_clip(tmp_path):
    wav = 0.5 * np.sin(np.linspace(0, 200, 8000, dtype=np.float32))[None]
    only = requests.write_clip(tmp_path / "a.wav", wav, 8000)
    assert only == {"wav": str(tmp_path / "a.wav"), "seconds": 1.0}
    out = requests.write_clip(tmp_path / "sub" / "b.wav", wav, 8000, "calm", spectrogram=tmp_path / "sub" / "b.png",
                              waveform=tmp_path / "sub" / "b_wave.png")
    assert list(out) == ["wav", "png", "waveform", "seconds"]
    assert sf.info(out["wav"]).frames == 8000
    for k in ("png", "waveform"):
        assert open(out[k], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
