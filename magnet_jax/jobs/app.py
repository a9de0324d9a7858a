"""Web demo (Gradio) on :class:`~magnet_jax.pipelines.magnet.MagnetPipeline`: generate, continue, infill.

The handlers are plain functions (unit-tested without a browser); :func:`build_app` wires them to a
``gr.Blocks`` page with a bounded queue, so concurrent requests wait their turn instead of interleaving; a waiting
visitor sees their place in the queue and can cancel. Each request has a time limit (``Models.time_limit``,
checked between LM calls: :mod:`magnet_jax.util.deadline`), so one request cannot hold the page. Pipelines are
cached per model, and each pipeline keeps its compiled decoding programs, so a second request with the same
shapes (model, duration, batch, decoding steps) reuses the compiled program.
"""
from __future__ import annotations

import logging
import math
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from magnet_jax.jobs import requests
from magnet_jax.presets import RELEASED
from magnet_jax.util import deadline, user_input
from magnet_jax.util.user_input import UserError

DEFAULT_MODEL = "bundled"   # the offline default: the model this project trained (magnet_jax/bundled)
RELEASED_IDS = tuple(r["hub"] for r in RELEASED.values())
MAX_TEXTS = 8


# UserError: bad input from the page, shown to the visitor as one line (the project's one user-error type).

MAX_DURATION = 60.0          # seconds one request may ask for (Models.max_duration; configurable at start-up)
TIME_LIMIT = 300.0           # seconds one request may run (Models.time_limit; None / 0: no limit)
MAX_QUEUE = 32               # requests waiting at once (build_app's max_queue); more are refused by Gradio
CONCURRENCY = 1              # requests generating at once: the others wait their turn in the queue
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:~|\.{0,2})?(?:/[^\s'\"/,;:()\[\]]+)+/?")


def check_port(host: str, port: int) -> None:
    """The start-up check of ``--host`` / ``--port``: a :class:`UserError` (one line) when the address cannot be
    served (port in use, no such address, a privileged port), before any model is loaded. Binds as the server
    does (``SO_REUSEADDR``: a port left in TIME_WAIT is free)."""
    import errno
    import socket
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"--host={host!r} is not an address of this machine ({e}): use 127.0.0.1 or 0.0.0.0") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            why = {errno.EADDRINUSE: "the port is in use (another server, or this app already running)",
                   errno.EACCES: "permission denied (ports below 1024 need privileges)"}.get(e.errno, e.strerror)
            raise UserError(f"cannot serve on {host}:{port}: {why or e}; pick another --port") from None


def public_message(text: str) -> str:
    """``text`` with server paths and directory listings removed: what a visitor may see."""
    text = re.sub(r"\(?(?:it|the folder) has:? \[.*?\]\)?", "", text)
    return " ".join(_PATH.sub("<server path>", text).split())


@dataclass
class Knobs:
    """The decoding knobs the page exposes, with audiocraft's names; ``None`` = the model's default."""
    decoding_steps: tuple[int, ...] | None = None
    temp: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_cfg_coef: float | None = None
    min_cfg_coef: float | None = None
    span_arrangement: str | None = None

    def overrides(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        for k in ("temp", "top_p", "max_cfg_coef", "min_cfg_coef"):
            if k in out and not math.isfinite(out[k]):
                raise UserError(f"{k} must be a finite number, got {out[k]}")
        if "top_k" in out:
            out["top_k"] = int(out["top_k"])
        return out


def parse_steps(text: str | None) -> tuple[int, ...] | None:
    """``"20,10,10,10"`` -> (20, 10, 10, 10); empty -> None (the model's default)."""
    if text is None or not str(text).strip():
        return None
    try:
        steps = tuple(int(s) for s in str(text).replace(" ", "").split(","))
    except ValueError:
        raise UserError(f"decoding steps must be comma-separated integers like 20,10,10,10, got {text!r}") from None
    if any(s < 1 for s in steps):
        raise UserError(f"decoding steps must be >= 1, got {text!r}")
    return steps


def parse_texts(text: str | None) -> list[str]:
    """One description per line; blank lines dropped. Empty -> a clear error."""
    texts = requests.text_lines(text)
    if not texts:
        raise UserError("type at least one description (one per line)")
    if len(texts) > MAX_TEXTS:
        raise UserError(f"at most {MAX_TEXTS} descriptions per request, got {len(texts)}")
    return texts


def read_upload(path: str | None, what: str) -> tuple[np.ndarray, int] | None:
    """An uploaded file -> (float32 [C, N], sample rate); a non-audio file -> a clear error (naming the file,
    never its server folder)."""
    return requests.read_audio_input(path, f"the {what} ({Path(path).name})" if path else what)


@dataclass
class Models:
    """Loaded pipelines, one per model name, shared by all requests (loading is serialised)."""
    loader: object = None                 # (name) -> pipeline; default MagnetPipeline.load
    allowed: tuple | None = None          # the models visitors may pick (None: any name, the Python API's default)
    max_duration: float = MAX_DURATION    # seconds one request may ask for
    time_limit: float | None = TIME_LIMIT  # seconds one request may run (checked between LM calls)
    _cache: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str):
        name = (name or DEFAULT_MODEL).strip()
        if self.allowed is not None and name not in self.allowed and name not in self._cache:
            raise UserError(f"model {name!r} is not offered here; pick one of the list")
        with self._lock:
            if name not in self._cache:
                self._cache[name] = self._load(name)
            return self._cache[name]

    def put(self, name: str, pipeline) -> None:
        """Serve an already loaded pipeline under ``name`` (e.g. the notebook's, with its compiled programs)."""
        with self._lock:
            self._cache[name.strip()] = pipeline

    def _load(self, name: str):
        from magnet_jax import hub
        load = self.loader
        if load is None:
            from magnet_jax.pipelines.magnet import MagnetPipeline
            load = MagnetPipeline.load
        try:
            return load(name)
        except (hub.HubError, FileNotFoundError, ValueError) as e:
            raise UserError(f"cannot load {name!r}: {e}") from e


@dataclass
class Result:
    wav_paths: list[str]
    spectrograms: list[str]
    waveforms: list[str]
    seconds: float
    message: str


def run_request(models: Models, *, model: str, text: str, duration: float, seed: int = 0,
                knobs: Knobs | None = None, prompt_path: str | None = None, infill_path: str | None = None,
                infill_start: float | None = None, infill_end: float | None = None,
                out_dir: str | None = None, progress=None) -> Result:
    """One request of the page: validate, generate, write WAV + spectrogram + waveform PNGs."""
    t0 = time.perf_counter()
    texts = parse_texts(text)
    duration = requests.duration("duration", duration)
    if duration is None:
        raise UserError("set the duration (seconds)")
    if duration > models.max_duration:
        raise UserError(f"duration {duration:g} s is more than the {models.max_duration:g} s one request may ask "
                        f"for here")
    seed = user_input.seed("seed", seed)
    overrides = (knobs or Knobs()).overrides()
    prompt = read_upload(prompt_path, "audio prompt")
    infill = read_upload(infill_path, "infill clip")
    if prompt is not None and infill is not None:
        raise UserError("give either an audio prompt to continue or a clip to infill, not both")
    step = (lambda frac, desc: progress(frac, desc=desc)) if progress else (lambda frac, desc: None)
    with deadline.limit(models.time_limit):   # from here: loading (once per model) and generation
        step(0.05, "loading the model")
        pipe = models.get(model)
        step(0.2, "generating")
        try:
            deadline.check()
            out = _generate(pipe, texts, duration, seed, overrides, prompt, infill, infill_start, infill_end)
        except UserError:
            raise
        except (ValueError, TypeError) as e:      # the pipeline's own checks (duration too short, knob ranges)
            raise UserError(user_input.one_line(e)) from None
    out = np.asarray(out)
    if not np.all(np.isfinite(out)):
        raise UserError("the model produced non-finite audio; try other settings")
    return _write(pipe, texts, out, seed, out_dir, t0, step)


def _generate(pipe, texts, duration, seed, overrides, prompt, infill, infill_start, infill_end):
    if infill is not None:
        start, end = requests.check_infill(infill, infill_start, infill_end, pipe.window_seconds)
        out = pipe.infill(*infill, texts, start=start, end=end, seed=int(seed), **overrides)
    elif prompt is not None:
        requests.check_prompt(prompt, duration)
        out = pipe.continuation(*prompt, texts, duration=duration, seed=int(seed), **overrides)
    else:
        out = pipe.generate(texts, duration=duration, seed=int(seed), **overrides)
    return out


def _write(pipe, texts, out, seed, out_dir, t0, step) -> Result:
    step(0.9, "writing audio")
    folder = Path(out_dir or tempfile.mkdtemp(prefix="magnet_app_"))
    stems = [folder / f"{i:02d}_seed{int(seed)}" for i in range(len(texts))]
    clips = [requests.write_clip(f"{s}.wav", w, pipe.sample_rate, t, spectrogram=f"{s}_spec.png",
                                 waveform=f"{s}_wave.png") for s, t, w in zip(stems, texts, out)]
    wavs, specs, waves = ([c[k] for c in clips] for k in ("wav", "png", "waveform"))
    secs = time.perf_counter() - t0
    step(1.0, "done")
    return Result(wavs, specs, waves, secs, f"{len(texts)} clip(s) of {out.shape[-1] / pipe.sample_rate:.2f} s "
                                             f"in {secs:.1f} s with {pipe.name}")


EXAMPLES = [
    ["a slow baroque chorale on church organ in A minor, 60 bpm", 8.0],   # the bundled model's corpus phrasing
    ["a lively folk fiddle tune in D major, 140 bpm", 8.0],
    ["a calm piano piece in C major, 80 bpm", 8.0],
]


def build_app(models: Models | None = None, default_model: str = DEFAULT_MODEL, out_root: str | None = None,
              max_queue: int | None = MAX_QUEUE):
    """The Gradio page. ``models`` lets tests inject a loader; ``max_queue``: requests waiting at once (None:
    unbounded)."""
    import gradio as gr

    from magnet_jax.decoding import GenerationConfig
    models = models or Models()
    d = GenerationConfig()

    def handler(model, text, duration, seed, steps, temp, top_p, top_k, max_cfg, min_cfg, arrangement,
                prompt, infill, infill_start, infill_end, progress=gr.Progress()):
        try:
            knobs = Knobs(decoding_steps=parse_steps(steps), temp=temp, top_p=top_p, top_k=top_k,
                          max_cfg_coef=max_cfg, min_cfg_coef=min_cfg, span_arrangement=arrangement or None)
            r = run_request(models, model=model, text=text, duration=duration, seed=seed, knobs=knobs,
                            prompt_path=prompt, infill_path=infill, infill_start=infill_start,
                            infill_end=infill_end, out_dir=tempfile.mkdtemp(dir=out_root), progress=progress)
        except UserError as e:
            raise gr.Error(public_message(str(e))) from None
        except Exception as e:        # noqa: BLE001 - logged here; the visitor sees no server detail
            logging.getLogger("magnet_jax.jobs.app").exception("request failed")
            raise gr.Error(f"generation failed ({type(e).__name__}); the server log has the details") from None
        return r.wav_paths[0], r.spectrograms[0], r.waveforms[0], r.wav_paths, r.message

    with gr.Blocks(title="MAGNeT (JAX)") as demo:
        gr.Markdown("# MAGNeT in JAX\nMasked non-autoregressive music generation. One description per line.")
        with gr.Row():
            with gr.Column():
                offered = list(models.allowed) if models.allowed is not None else [default_model, *RELEASED_IDS]
                model = gr.Dropdown(offered, value=default_model, allow_custom_value=models.allowed is None,
                                    label="model" if models.allowed is not None else
                                    "model (a released id, a local folder, or config:NAME)", elem_id="model")
                text = gr.Textbox(lines=3, label="descriptions", elem_id="text",
                                  placeholder="80s electronic track with melodic synthesizers")
                duration = gr.Number(value=5.0, label="duration (s)", elem_id="duration_s")
                seed = gr.Number(value=0, precision=0, label="seed")
                with gr.Accordion("decoding (audiocraft names; blank = the model's default)", open=False):
                    steps = gr.Textbox(value="", label="decoding_steps per codebook, e.g. 20,10,10,10")
                    temp = gr.Number(value=None, label=f"temp (default {d.temp})")
                    top_p = gr.Number(value=None, label=f"top_p (default {d.top_p})")
                    top_k = gr.Number(value=None, precision=0, label=f"top_k (default {d.top_k})")
                    max_cfg = gr.Number(value=None, label=f"max_cfg_coef (default {d.max_cfg_coef})")
                    min_cfg = gr.Number(value=None, label=f"min_cfg_coef (default {d.min_cfg_coef})")
                    arrangement = gr.Dropdown(["", "nonoverlap", "stride1"], value="", label="span_arrangement")
                with gr.Accordion("continue / infill an uploaded clip", open=False):
                    prompt = gr.Audio(type="filepath", label="audio prompt to continue", sources=["upload"])
                    infill = gr.Audio(type="filepath", label="clip to infill", sources=["upload"])
                    infill_start = gr.Number(value=None, label="infill start (s)")
                    infill_end = gr.Number(value=None, label="infill end (s)")
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel = gr.Button("Cancel", elem_id="cancel")   # a waiting request leaves the queue
            with gr.Column():
                audio = gr.Audio(type="filepath", label="first clip", elem_id="audio_out", interactive=False)
                spec = gr.Image(type="filepath", label="spectrogram", elem_id="spectrogram_img")
                wave = gr.Image(type="filepath", label="waveform", elem_id="waveform_img")
                files = gr.File(label="all clips (WAV)", file_count="multiple")
                status = gr.Markdown(elem_id="status")
        gr.Examples(EXAMPLES, inputs=[text, duration])
        # show_progress="full": a waiting visitor sees "queue: position/size" and the time estimate
        event = run.click(handler, [model, text, duration, seed, steps, temp, top_p, top_k, max_cfg, min_cfg,
                                    arrangement, prompt, infill, infill_start, infill_end],
                          [audio, spec, wave, files, status], show_progress="full")
        cancel.click(None, None, None, cancels=[event])
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=max_queue)
    return demo
