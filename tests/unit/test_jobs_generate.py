"""The generate batch job (magnet_jax.jobs.generate) and the audio files it writes, without running a model."""
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from magnet_jax import hub
from magnet_jax.audio_files import NonFiniteAudioError, safe_stem, write_wav
from magnet_jax.decoding import GenerationConfig
from magnet_jax.jobs import generate as job
from magnet_jax.jobs.generate import GenerationRequest, RequestError
from magnet_jax.pipelines.base import EXAMPLE_DESCRIPTION


def req(**kw):
    return GenerationRequest(**{"model": "config:tiny", "texts": ["calm piano"], **kw})


def test_write_wav_refuses_non_finite_audio(tmp_path):
    bad = np.zeros((1, 800), np.float32)
    bad[0, 10] = np.nan
    with pytest.raises(NonFiniteAudioError, match="NaN or inf"):
        write_wav(tmp_path / "a.wav", bad, 8000)
    assert not (tmp_path / "a.wav").exists()
    ok = write_wav(tmp_path / "b.wav", np.full((1, 800), 2.0, np.float32), 8000)   # clipped, not refused
    assert sf.read(ok)[0].max() == pytest.approx(1.0, abs=1e-4)


def test_clip_names_carry_index_and_seed_and_never_overwrite(tmp_path):
    assert safe_stem("Calm piano!", 3, seed=7) == "003_calm_piano_seed7"
    texts = ["calm piano", "calm piano", None]
    paths = job.clip_paths(tmp_path, texts, seed=0, overwrite=False)
    assert [p[0].name for p in paths] == ["000_calm_piano_seed0.wav", "001_calm_piano_seed0.wav",
                                          "002_unconditional_seed0.wav"]
    assert job.clip_paths(tmp_path, texts, seed=1, overwrite=False)[0][0].name == "000_calm_piano_seed1.wav"
    paths[1][1].write_bytes(b"earlier run")
    with pytest.raises(RequestError, match="--overwrite"):
        job.clip_paths(tmp_path, texts, seed=0, overwrite=False)
    assert job.clip_paths(tmp_path, texts, seed=0, overwrite=True) == paths
    assert paths[1][1].read_bytes() == b"earlier run"


def test_out_dir_checked_writable(tmp_path):
    assert job.check_out_dir(str(tmp_path / "new" / "dir")).is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RequestError, match="not writable"):
        job.check_out_dir(str(blocker / "sub"))


@pytest.mark.parametrize("kw,message", [
    (dict(num_samples=0), "--num_samples=0"),
    (dict(batch_size=0), "--batch_size=0"),
    (dict(duration=float("nan")), "--duration=nan"),
    (dict(duration=float("inf")), "--duration=inf"),
    (dict(duration=-1.0), "--duration=-1"),
    (dict(infill_wav="a.wav"), "infill needs"),
    (dict(infill_start=1.0, infill_end=2.0), "infill needs"),
    (dict(infill_wav="a.wav", infill_start=1.0), "infill needs"),
    (dict(prompt_wav="a.wav", infill_wav="a.wav", infill_start=0.0, infill_end=1.0), "not both"),
    (dict(texts=[" "]), "empty --text"),
    (dict(texts=[""]), "empty --text"),                 # an explicitly empty --text is not "no text"
    (dict(unconditional=True), "takes no --text"),
    (dict(overrides={"max_cfg_coef": float("nan")}), "--max_cfg_coef=nan"),
])
def test_request_errors(kw, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(")):
        job.check_request(req(**kw))


def test_texts(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("jazz\n\n  rock  \n", encoding="utf-8")
    assert job.check_request(req(text_file=str(f), num_samples=2)) == ["calm piano"] * 2 + ["jazz"] * 2 + ["rock"] * 2
    assert job.check_request(req(texts=[], unconditional=True, num_samples=3)) == [None] * 3
    f.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(RequestError, match="not UTF-8"):
        job.check_request(req(text_file=str(f)))
    with pytest.raises(RequestError, match="does not exist"):
        job.check_request(req(text_file=str(tmp_path / "nope.txt")))


def test_no_text_is_the_example_description_and_an_empty_text_file_an_error(tmp_path):
    assert job.check_request(req(texts=[], num_samples=2)) == [EXAMPLE_DESCRIPTION] * 2    # until the model loads
    assert job.texts_of(req(texts=[]), "a slow chorale on oboe") == ["a slow chorale on oboe"]
    assert not job.uses_example(req()) and not job.uses_example(req(texts=[], unconditional=True))
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(RequestError, match="no text in --text_file"):
        job.check_request(req(texts=[], text_file=str(tmp_path / "blank.txt")))


class _Pipe:
    """Stands in for a loaded pipeline: records what generate was asked, returns quiet audio."""
    name, window_seconds, sample_rate = "stand-in", 1.0, 8000

    def __init__(self, example):
        self.example_description, self.asked = example, []
        self.generation = GenerationConfig()

    def generate(self, texts, *, num_samples, **kw):
        self.asked.append(texts)
        return np.full((num_samples, 1, 800), 0.1, np.float32)


@pytest.mark.parametrize("example", [EXAMPLE_DESCRIPTION, "baroque chorale played on accordion, 76 bpm, E major"])
def test_a_request_without_text_generates_the_models_example_description(example, monkeypatch, tmp_path):
    """tools/run.sh with no --text: the loaded model's own example (the bundled model's is not the released one's),
    named in one log line and in the clips' file names."""
    pipe = _Pipe(example)
    monkeypatch.setattr(job, "load_pipeline", lambda *a, **kw: pipe)
    logs = []
    records = job.run_to_files(GenerationRequest(model="my/model", num_samples=2, out_dir=str(tmp_path)), logs.append)
    assert pipe.asked == [[example, example]] and [r["text"] for r in records] == [example, example]
    said = [line for line in logs if example in line]
    assert len(said) == 1 and "example description" in said[0], logs
    assert Path(records[0]["wav"]).name == safe_stem(example, 0, 0) + ".wav"
    with pytest.raises(RequestError, match="--overwrite"):            # the names are checked before generating
        job.run_to_files(GenerationRequest(model="my/model", num_samples=2, out_dir=str(tmp_path)), logs.append)
    assert len(pipe.asked) == 1
    job.run_to_files(GenerationRequest(model="my/model", texts=["jazz"], out_dir=str(tmp_path)), logs.append)
    assert pipe.asked[-1] == ["jazz"]                                   # a given text is used as given


def test_input_audio_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(RequestError, match="--prompt_wav=.*no such file"):
        job._read_input_audio("prompt_wav", str(tmp_path / "missing.wav"))
    with pytest.raises(RequestError, match="--prompt_wav=.*not a readable audio file"):
        job._read_input_audio("prompt_wav", str(tmp_path / "notes.txt"))


class _Loads:
    """Stands in for MagnetPipeline.load: raises ``error`` for the first model, returns a name otherwise."""

    def __init__(self, error):
        self.error, self.calls = error, []

    def __call__(self, model, **kw):
        self.calls.append(model)
        if len(self.calls) == 1 and self.error:
            raise self.error
        return f"pipeline:{model}"


def test_fallback_only_when_the_hub_is_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    logs = []
    # unreachable hub, model not cached: the fallback, with the whole reason shown
    loads = _Loads(hub.HubError("could not download 'state_dict.bin': the hub is not reachable\nsecond line"))
    monkeypatch.setattr(job.MagnetPipeline, "load", loads)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    assert job.load_pipeline("facebook/magnet-small-10secs", "config:tiny", logs.append) == "pipeline:config:tiny"
    assert "RANDOM-INIT" in logs[0] and "second line" in logs[0]
    # unreachable hub, model cached: no fallback
    monkeypatch.setattr(job.MagnetPipeline, "load", _Loads(None))
    assert job.load_pipeline("facebook/magnet-small-10secs", "config:tiny", logs.append).endswith("10secs")
    # reachable hub, any error: raised, never a fallback
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(job.MagnetPipeline, "load", _Loads(hub.HubError("hub repo 'x/y' does not exist")))
    with pytest.raises(RequestError, match="does not exist"):
        job.load_pipeline("x/y", "config:tiny", logs.append)


@pytest.mark.parametrize("model", ["./my_model", "/no/such/folder", "~/nope", "models/a/b", "single"])
def test_mistyped_local_path_is_an_error_not_a_fallback(model, monkeypatch, tmp_path):
    loads = _Loads(None)
    monkeypatch.setattr(job.MagnetPipeline, "load", loads)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(RequestError, match="no such local folder"):
        job.load_pipeline(model, "config:tiny")
    assert not loads.calls
    monkeypatch.chdir(tmp_path)
    os.mkdir("models")
    with pytest.raises(RequestError, match="no such local folder"):          # under an existing folder
        job.load_pipeline("models/magnet-smal", "config:tiny")


@pytest.mark.parametrize("kw,message", [
    (dict(num_samples=1_000_000_000), "more than 1000 .*--allow_large"),
    (dict(num_samples=1_000_000_000, allow_large=True), "more than 100000"),
    (dict(duration=1e4), "more than 600 s .*--allow_large"),
    (dict(duration=1e9, allow_large=True), "24 h"),
    (dict(texts=["a"] * 600, num_samples=2), "1200 clips .* more than 1000"),
    (dict(seed=2**63), r"--seed=.* must be in \[0, 2\*\*63\)"),
    (dict(seed=-1), r"--seed=-1 must be in"),
])
def test_unbounded_requests_are_refused_before_loading(kw, message):
    """Issue 32: caps on what one request may ask, checked before any model is loaded; a flag lifts the soft ones."""
    with pytest.raises(RequestError, match=message):
        job.check_request(req(**kw))
    assert len(job.check_request(req(num_samples=1500, allow_large=True))) == 1500


def test_unreadable_text_file_is_a_request_error(tmp_path):
    with pytest.raises(RequestError, match="--text_file=.* is a folder"):
        job.check_request(req(text_file=str(tmp_path)))


def test_the_request_passes_its_adapter_and_rescorer_to_the_loader(monkeypatch, tmp_path):
    seen = {}

    def load_pipeline(model, fallback, log, **kw):
        seen.update(kw, model=model)
        raise RequestError("stop here")

    monkeypatch.setattr(job, "load_pipeline", load_pipeline)
    req = job.GenerationRequest(texts=["calm piano"], model="my/base", adapter=str(tmp_path / "adapter"),
                                rescorer="my/musicgen", out_dir=str(tmp_path / "out"))
    with pytest.raises(RequestError, match="stop here"):
        job.run_to_files(req, log=lambda *_: None)
    assert seen["model"] == "my/base" and seen["adapter"] == str(tmp_path / "adapter")
    assert seen["rescorer"] == "my/musicgen"
