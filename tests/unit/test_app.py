"""The web demo's handlers, without a browser: validation messages and the request path."""
import socket
import time
import wave
from dataclasses import dataclass

import numpy as np
import pytest

from magnet_jax.jobs import app


@dataclass
class FakePipe:
    """Records what it was asked; returns a sine per text."""
    sample_rate: int = 8000
    window_seconds: float = 4.0
    name: str = "fake"

    def __post_init__(self):
        self.calls = []

    def _wav(self, n, dur):
        t = np.arange(int(dur * self.sample_rate)) / self.sample_rate
        return np.stack([0.5 * np.sin(2 * np.pi * 440 * t)[None]] * n).astype(np.float32)

    def generate(self, texts, *, duration, seed, **kw):
        self.calls.append(("generate", list(texts), duration, seed, kw))
        return self._wav(len(texts), duration)

    def continuation(self, wav, sr, texts, *, duration, seed, **kw):
        self.calls.append(("continuation", wav.shape, sr, duration, kw))
        return self._wav(len(texts), duration)

    def infill(self, wav, sr, texts, *, start, end, seed, **kw):
        self.calls.append(("infill", start, end, kw))
        return self._wav(len(texts), wav.shape[-1] / sr)


def _models(pipe):
    loads = []
    return app.Models(loader=lambda name: loads.append(name) or pipe), loads


def _write_wav(path, seconds=1.0, sr=8000):
    import soundfile as sf
    sf.write(str(path), 0.1 * np.ones(int(seconds * sr), np.float32), sr)
    return str(path)


def test_parse_texts_and_steps():
    assert app.parse_texts(" calm piano \n\n rock ") == ["calm piano", "rock"]
    with pytest.raises(app.UserError, match="at least one description"):
        app.parse_texts("  \n ")
    with pytest.raises(app.UserError, match="at most"):
        app.parse_texts("\n".join(["x"] * (app.MAX_TEXTS + 1)))
    assert app.parse_steps("20, 10,10,10") == (20, 10, 10, 10)
    assert app.parse_steps("") is None
    with pytest.raises(app.UserError, match="comma-separated integers"):
        app.parse_steps("20,ten")
    with pytest.raises(app.UserError, match=">= 1"):
        app.parse_steps("0,1")


def test_request_writes_playable_wavs_and_images(tmp_path):
    pipe = FakePipe()
    models, loads = _models(pipe)
    knobs = app.Knobs(decoding_steps=(3, 2), temp=2.0, top_k=5.0)
    r = app.run_request(models, model="m", text="a\nb", duration=1.5, seed=7, knobs=knobs, out_dir=str(tmp_path))
    assert len(r.wav_paths) == len(r.spectrograms) == len(r.waveforms) == 2
    with wave.open(r.wav_paths[1]) as w:
        assert (w.getframerate(), w.getnframes()) == (8000, 12000)
    for p in r.spectrograms + r.waveforms:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert pipe.calls == [("generate", ["a", "b"], 1.5, 7, {"decoding_steps": (3, 2), "temp": 2.0, "top_k": 5})]
    app.run_request(models, model="m", text="c", duration=1.0, out_dir=str(tmp_path))
    assert loads == ["m"]                      # the pipeline (and its compiled programs) is reused
    models.put("given", FakePipe(name="given"))
    assert app.run_request(models, model="given", text="d", duration=1.0, out_dir=str(tmp_path)).message.endswith(
        "with given") and loads == ["m"]


def test_continuation_and_infill_routes(tmp_path):
    pipe = FakePipe()
    models, _ = _models(pipe)
    clip = _write_wav(tmp_path / "in.wav", 2.0)
    app.run_request(models, model="m", text="x", duration=3.0, prompt_path=clip, out_dir=str(tmp_path))
    app.run_request(models, model="m", text="x", duration=3.0, infill_path=clip, infill_start=0.5, infill_end=1.0,
                    out_dir=str(tmp_path))
    assert [c[0] for c in pipe.calls] == ["continuation", "infill"]
    assert pipe.calls[0][1:4] == ((1, 16000), 8000, 3.0)
    assert pipe.calls[1][1:3] == (0.5, 1.0)


@pytest.mark.parametrize("kw, msg", [
    (dict(text=""), "at least one description"),
    (dict(duration=float("nan")), "positive number"),
    (dict(duration=0), "positive number"),
    (dict(knobs=app.Knobs(temp=float("inf"))), "temp must be a finite"),
    (dict(infill_start=1.0, infill_end=5.0, infill="clip"), "outside the 2.00 s clip"),
    (dict(infill_start=None, infill_end=1.0, infill="clip"), "set the infill start and end"),
    (dict(prompt="clip", duration=1.0), "must be shorter than the duration"),
    (dict(prompt="notaudio"), "not a readable audio file"),
    (dict(prompt="clip", infill="clip"), "not both"),
])
def test_bad_input_is_one_clear_message(tmp_path, kw, msg):
    pipe = FakePipe()
    models, _ = _models(pipe)
    files = {"clip": _write_wav(tmp_path / "c.wav", 2.0), "notaudio": str(tmp_path / "x.wav")}
    (tmp_path / "x.wav").write_text("this is not audio")
    args = dict(model="m", text="x", duration=3.0, out_dir=str(tmp_path))
    args.update({k: v for k, v in kw.items() if k not in ("prompt", "infill")})
    if "prompt" in kw:
        args["prompt_path"] = files[kw["prompt"]]
    if "infill" in kw:
        args["infill_path"] = files[kw["infill"]]
    with pytest.raises(app.UserError, match=msg) as e:
        app.run_request(models, **args)
    assert "\n" not in str(e.value)
    assert pipe.calls == []                    # nothing generated on bad input


def test_unreachable_model_is_a_user_error():
    from magnet_jax import hub

    def offline(name):
        raise hub.HubError(f"{name} cannot be reached: the Hugging Face hub is offline")
    with pytest.raises(app.UserError, match="cannot load 'facebook/magnet-small-10secs': .* offline"):
        app.Models(loader=offline).get("facebook/magnet-small-10secs")


def test_build_app_has_a_queue():
    demo = app.build_app(app.Models(loader=lambda n: FakePipe()))
    assert demo._queue is not None
    assert demo._queue.default_concurrency_limit == app.CONCURRENCY == 1      # requests generate one at a time


# ----------------------------------------------------------------------------- issue 32: bounded and closed
def test_only_operator_allowed_models_are_loaded(tmp_path):
    loads = []
    models = app.Models(loader=lambda name: loads.append(name) or FakePipe(), allowed=("bundled", "a/b"))
    for typed in ("/etc", str(tmp_path), "config:tiny", "someone/else"):
        with pytest.raises(app.UserError, match="not offered here"):
            app.run_request(models, model=typed, text="x", duration=1.0, out_dir=str(tmp_path))
    assert loads == []
    app.run_request(models, model="a/b", text="x", duration=1.0, out_dir=str(tmp_path))
    assert loads == ["a/b"]


def test_visitor_errors_reveal_no_server_paths():
    msg = app.public_message("cannot load '/etc': not a model folder (it has: ['.java', '.pwd.lock', 'PackageKit']); "
                             "see /srv/models/x/state_dict.bin or ./cache/y")
    assert "/etc" not in msg and "PackageKit" not in msg and "/srv" not in msg and "cache/y" not in msg
    assert msg.startswith("cannot load '<server path>'")


@pytest.mark.parametrize("kw,msg", [
    (dict(duration=1e9), "more than the 60 s one request"),
    (dict(seed=1e30), r"seed=.* must be in \[0, 2\*\*63\)"),
    (dict(seed=-3), "must be in"),
])
def test_requests_are_bounded(tmp_path, kw, msg):
    pipe = FakePipe()
    models, _ = _models(pipe)
    with pytest.raises(app.UserError, match=msg):
        app.run_request(models, **{"model": "m", "text": "x", "duration": 1.0, "out_dir": str(tmp_path), **kw})
    assert pipe.calls == []


def test_pipeline_value_errors_are_user_errors(tmp_path):
    class Short(FakePipe):
        def generate(self, texts, *, duration, **kw):
            raise ValueError(f"duration={duration} s is shorter than one frame")
    models = app.Models(loader=lambda name: Short())
    with pytest.raises(app.UserError, match="shorter than one frame"):
        app.run_request(models, model="m", text="x", duration=0.001, out_dir=str(tmp_path))


def test_requests_have_a_time_limit(tmp_path):
    """Issue 32: one request could hold the page forever; it now stops at its time limit, between LM calls
    (the pipelines call deadline.check before each), and the next request is served."""
    from magnet_jax.util import deadline

    class Endless(FakePipe):
        def generate(self, texts, *, duration, **kw):
            while True:                    # windows of a long-form generation
                deadline.check()
                time.sleep(0.01)
    slow = app.Models(loader=lambda name: Endless(), time_limit=0.2)
    t0 = time.monotonic()
    with pytest.raises(app.UserError, match="0.2 s time limit"):
        app.run_request(slow, model="m", text="x", duration=1.0, out_dir=str(tmp_path))
    assert time.monotonic() - t0 < 5
    deadline.check()                       # the limit ended with the request
    models, _ = _models(FakePipe())
    assert models.time_limit == app.TIME_LIMIT
    app.run_request(models, model="m", text="x", duration=1.0, out_dir=str(tmp_path))


def test_queue_shows_the_position_and_can_be_cancelled():
    demo = app.build_app(app.Models(loader=lambda n: FakePipe()))
    assert demo._queue.max_size == app.MAX_QUEUE
    deps = demo.config["dependencies"]
    (gen,) = [d for d in deps if d["api_name"] == "handler"]
    assert gen["queue"] and gen["show_progress"] == "full"      # Gradio's "queue: position/size" on the outputs
    cancel_id = next(c["id"] for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "cancel")
    assert any(gen["id"] in d["cancels"] and (cancel_id, "click") in map(tuple, d["targets"]) for d in deps)


def test_port_in_use_is_refused_at_start_up():
    """Issue 32: a port in use was a traceback after the model had loaded."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(app.UserError, match=f"cannot serve on 127.0.0.1:{port}: the port is in use"):
            app.check_port("127.0.0.1", port)
    app.check_port("127.0.0.1", port)       # free again
    with pytest.raises(app.UserError, match="not an address of this machine"):
        app.check_port("no-such-host.invalid", port)
