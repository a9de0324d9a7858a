"""The generate batch job behind ``tools/generate.py``: a request -> WAV + spectrogram PNG files.

Every user error is a :class:`RequestError` (one line: what is wrong and what to do), raised before any
generation starts where it can be known then (inputs, output folder, existing files). The checks shared with the
web page (texts, durations, audio inputs) and the clip writing are :mod:`magnet_jax.jobs.requests`.

A request with no text at all (no ``--text``, ``--text_file`` or ``--unconditional``: ``tools/run.sh`` as is)
generates the loaded model's ``example_description``, a description that model was trained to follow (the
released models': :data:`~magnet_jax.pipelines.base.EXAMPLE_DESCRIPTION`; the bundled model's: one in its corpus'
wording), and says which.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from magnet_jax import hub
from magnet_jax.jobs import requests
from magnet_jax.pipelines.base import EXAMPLE_DESCRIPTION
from magnet_jax.pipelines.magnet import MagnetPipeline
from magnet_jax.util import user_input
from magnet_jax.util.user_input import UserError

# The model tools/run.sh falls back to when the hub is unreachable: the small model this project trained offline
# (magnet_jax/bundled/weights/, built by tools/make_bundled.sh).
OFFLINE_FALLBACK = "bundled"
# A duration beyond this many windows warns first: time grows with the windows, and the codec decodes the
# whole clip at once (600 s of config:tiny peaks at about 5 GB).
LONG_WARN_WINDOWS = 4
# What one request may ask without allow_large (--allow_large): clips and seconds per clip. Beyond the hard caps
# nothing is attempted (the clip list, or one batch's audio, would not fit in any machine's memory).
SOFT_MAX_CLIPS, HARD_MAX_CLIPS = 1000, 100_000
SOFT_MAX_DURATION, HARD_MAX_DURATION = 600.0, 24 * 3600.0


# A user error in a generation request (the CLI shows it as a usage error, exit 2): the project's one type.
RequestError = UserError


@dataclasses.dataclass
class GenerationRequest:
    """Everything ``tools/generate.py`` asks for (see its flags)."""
    model: str
    texts: list = dataclasses.field(default_factory=list)
    text_file: str | None = None
    unconditional: bool = False
    duration: float | None = None
    extend_stride: float | None = None
    batch_size: int = 4
    num_samples: int = 1
    seed: int = 0
    out_dir: str = "out"
    overwrite: bool = False
    offline_fallback: str | None = None
    prompt_wav: str | None = None
    infill_wav: str | None = None
    infill_start: float | None = None
    infill_end: float | None = None
    melody: str | None = None             # MusicGen-melody: the melody's audio file
    overrides: dict = dataclasses.field(default_factory=dict)
    t5: str | None = None
    codec: str | None = None
    rescorer: str | None = None                  # companion MusicGen (rescoring, hybrid prefix)
    adapter: str | None = None                   # a LoRA adapter folder applied to the model at load
    hybrid_prefix_seconds: float | None = None
    allow_large: bool = False                    # lift the soft caps on clips and duration


# ---------------------------------------------------------------------------------- request checks
def uses_example(req: GenerationRequest) -> bool:
    """No ``--text``, ``--text_file`` or ``--unconditional``: the job generates the model's example description."""
    return not req.texts and not req.text_file and not req.unconditional


def texts_of(req: GenerationRequest, example: str = EXAMPLE_DESCRIPTION) -> list:
    """One entry per clip: each text ``num_samples`` times (``None`` = unconditional); with no text at all
    (:func:`uses_example`), ``example`` (the loaded model's example description; until then the released models')."""
    if uses_example(req):
        return [example] * req.num_samples
    texts = list(req.texts)
    if req.text_file:
        texts += requests.text_lines(user_input.text_file("text_file", req.text_file))
    if req.unconditional:
        if texts:
            raise RequestError("--unconditional takes no --text / --text_file")
        return [None] * req.num_samples
    if not texts:
        raise RequestError(f"no text in --text_file={req.text_file!r}: give one description per line (or pass "
                           f"--text=..., or --unconditional)")
    if any(not t.strip() for t in texts):
        raise RequestError("empty --text: describe the audio, or use --unconditional")
    return [t for t in texts for _ in range(req.num_samples)]


def check_size(num_clips: int, duration: float | None, batch_size: int, allow_large: bool) -> None:
    """Refuses a request too large for any machine (hard caps), or, unless ``allow_large``, larger than one
    should ask for by accident (soft caps), before anything is loaded."""
    lift = " (pass --allow_large to lift this cap)"
    if num_clips > HARD_MAX_CLIPS:
        raise RequestError(f"{num_clips} clips (texts x --num_samples) is more than {HARD_MAX_CLIPS}: split the job")
    if num_clips > SOFT_MAX_CLIPS and not allow_large:
        raise RequestError(f"{num_clips} clips (texts x --num_samples) is more than {SOFT_MAX_CLIPS}{lift}")
    if duration is not None:
        if duration > HARD_MAX_DURATION:
            raise RequestError(f"--duration={duration:g} s is more than {HARD_MAX_DURATION:g} s (24 h): no machine "
                               f"holds that clip's audio; generate shorter clips")
        if duration > SOFT_MAX_DURATION and not allow_large:
            raise RequestError(f"--duration={duration:g} s is more than {SOFT_MAX_DURATION:g} s (time and memory "
                               f"grow with it){lift}")
        need = min(batch_size, num_clips) * duration * 48000 * 2 * 4 * 4    # worst case: 48 kHz stereo, codec x4
        avail = _available_memory()
        if avail and need > avail:
            raise RequestError(f"--duration={duration:g} s x {min(batch_size, num_clips)} clips per batch needs "
                               f"about {need / 2**30:.1f} GiB, more than the {avail / 2**30:.1f} GiB this machine "
                               f"has: lower --batch_size or --duration")


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _read_input_audio(flag: str, path: str | None):
    return requests.read_audio_input(path, f"--{flag}={path!r}")


def check_request(req: GenerationRequest) -> list:
    """Validates everything that does not need the model; returns the clip texts."""
    user_input.count("num_samples", req.num_samples, maximum=None if req.allow_large else SOFT_MAX_CLIPS,
                     hint=" (pass --allow_large to lift this cap)")
    user_input.count("batch_size", req.batch_size)
    user_input.seed("seed", req.seed)
    requests.duration("--duration", req.duration)
    user_input.finite("extend_stride", req.extend_stride, positive=True)
    user_input.finite("infill_start", req.infill_start)
    user_input.finite("infill_end", req.infill_end)
    for k, v in req.overrides.items():
        if isinstance(v, float):
            user_input.finite(k, v)
    if (req.infill_start is None) != (req.infill_end is None) or (
            (req.infill_start is None) == bool(req.infill_wav)):
        raise RequestError("infill needs --infill_wav, --infill_start and --infill_end together")
    if req.melody and (req.prompt_wav or req.infill_wav):
        raise RequestError("--melody conditions a new generation: use it without --prompt_wav / --infill_wav")
    if req.prompt_wav and req.infill_wav:
        raise RequestError("use either --prompt_wav (continuation) or --infill_wav, not both")
    user_input.finite("hybrid_prefix_seconds", req.hybrid_prefix_seconds, positive=True)
    if req.hybrid_prefix_seconds is not None and req.infill_wav:
        raise RequestError("--hybrid_prefix_seconds does not apply to infill: use one or the other")
    if req.infill_wav and req.duration is not None:
        raise RequestError("--duration does not apply to infill (the output has the length of --infill_wav)")
    check_size(req.num_samples, req.duration, req.batch_size, req.allow_large)
    texts = texts_of(req)
    check_size(len(texts), req.duration, req.batch_size, req.allow_large)
    return texts


def check_out_dir(out_dir: str) -> Path:
    """Creates ``out_dir`` and proves it writable now, before any audio is generated."""
    return user_input.writable_dir("out_dir", out_dir)


def clip_paths(out: Path, texts: list, seed: int, overwrite: bool) -> list[tuple[Path, Path]]:
    """``(wav, png)`` per clip, named ``NNN_slug_seedS``; refuses to overwrite unless ``overwrite``."""
    from magnet_jax.audio_files import safe_stem
    paths = [(out / f"{s}.wav", out / f"{s}.png") for s in (safe_stem(t or "", i, seed) for i, t in enumerate(texts))]
    existing = [str(f) for pair in paths for f in pair if f.exists()]
    if existing and not overwrite:
        raise RequestError(f"{len(existing)} output file(s) exist already, e.g. {existing[0]!r}: pass --overwrite, "
                           f"another --seed or another --out_dir")
    return paths


# ---------------------------------------------------------------------------------- model loading
def _missing_local_path(model: str) -> bool:
    """A name that can only mean a local path (absolute, ./, ~, several parts, or under an existing
    folder) but does not exist: a typo, never something to look up on the hub."""
    if model.startswith("config:") or model == "bundled" or hub.is_local(model):
        return False
    parts = Path(model).parts
    return (model.startswith((".", "/", "~")) or len(parts) != 2 or Path(parts[0]).expanduser().is_dir())


def load_pipeline(model: str, offline_fallback: str | None = None, log=print, **kw) -> MagnetPipeline:
    """:meth:`MagnetPipeline.load`. With ``offline_fallback``, that model is used instead (saying so) only
    when the hub cannot be reached and ``model`` is not in the local cache; every other error is raised."""
    kw = {k: v for k, v in kw.items() if v is not None}
    offline_fallback = OFFLINE_FALLBACK if offline_fallback == "default" else offline_fallback
    if _missing_local_path(model):
        raise RequestError(f"--model={model!r}: no such local folder or file (a hub model is 'owner/name', "
                           f"a random-init one config:NAME)")
    # the hub's one probe: unreachable, every look-up reads the local cache without retries (magnet_jax.hub)
    offline = offline_fallback is not None and not model.startswith("config:") and not hub.hub_reachable()
    try:
        return MagnetPipeline.load(model, **kw)
    except hub.HubError as e:
        if not (offline and offline_fallback):
            raise RequestError(f"{e} (or run offline with --model={OFFLINE_FALLBACK}, trained here)") from None
        what = ("a RANDOM-INIT model, so the audio is noise-like, not music" if offline_fallback.startswith("config:")
                else "the small model this project trained offline (music, far from the released models' quality)")
        log(f"NOTE: the Hugging Face hub is not reachable and {model!r} is not in the local cache:\n"
            f"      {e}\n"
            f"      Falling back to {offline_fallback!r}: {what}. "
            f"Pass a local folder with the released files for real results.")
        return MagnetPipeline.load(offline_fallback)


# ---------------------------------------------------------------------------------- the job
def run_to_files(req: GenerationRequest, log=print) -> list[dict]:
    """Runs a request; writes ``out_dir/NNN_slug_seedS.wav`` + ``.png`` per clip; returns their records."""
    from tqdm import tqdm

    from magnet_jax.audio_files import check_finite

    texts = check_request(req)
    prompt_audio = _read_input_audio("prompt_wav", req.prompt_wav)
    infill_audio = _read_input_audio("infill_wav", req.infill_wav)
    melody = _read_input_audio("melody", req.melody)
    out = check_out_dir(req.out_dir)
    example = uses_example(req)     # the clips' names wait for the model's example description
    paths = None if example else clip_paths(out, texts, req.seed, req.overwrite)
    pipe = load_pipeline(req.model, req.offline_fallback, log, t5=req.t5, codec=req.codec, rescorer=req.rescorer,
                         adapter=req.adapter)
    if example:
        texts = texts_of(req, pipe.example_description)
        log(f"text: {texts[0]!r}, the example description of {pipe.name} (no --text given)")
        paths = clip_paths(out, texts, req.seed, req.overwrite)
    hybrid = {} if req.hybrid_prefix_seconds is None else {"hybrid_prefix_seconds": req.hybrid_prefix_seconds}
    if infill_audio is not None:
        requests.check_infill(infill_audio, req.infill_start, req.infill_end, pipe.window_seconds)
    if prompt_audio is not None:
        requests.check_prompt(prompt_audio, req.duration)
    if melody is not None and not getattr(pipe, "has_melody", False):
        raise RequestError(f"--melody needs a MusicGen-melody model (facebook/musicgen-melody); {pipe.name} has none")
    own = req.overrides
    if hybrid:        # MusicGen-only knobs (cfg_coef, two_step_cfg) go to the hybrid's MusicGen prefix
        from magnet_jax.pipelines.companion import split_overrides
        own = split_overrides(req.overrides)[0]
    try:
        gen = pipe.generation.replace(**own)
    except (TypeError, ValueError) as e:
        raise RequestError(f"bad generation setting: {e}") from None
    steps = getattr(gen, "decoding_steps", "autoregressive")      # MusicGen has no decoding steps
    log(f"model {pipe.name}: window {pipe.window_seconds:g} s, {pipe.sample_rate} Hz, steps {steps}")
    duration = req.duration
    if duration is not None:
        pipe.check_duration(duration)
        if duration > LONG_WARN_WINDOWS * pipe.window_seconds:
            log(f"WARNING: --duration={duration:g} s is {duration / pipe.window_seconds:.0f}x the model's "
                f"{pipe.window_seconds:g} s window: generation runs window after window (time grows with the "
                f"duration) and the codec decodes the whole clip at once (memory grows with it too; 600 s of "
                f"config:tiny peaks at about 5 GB).")
    records = []
    chunks = [texts[i:i + req.batch_size] for i in range(0, len(texts), req.batch_size)]
    for ci, chunk in enumerate(tqdm(chunks, desc="generating", unit="batch")):
        cond = None if all(t is None for t in chunk) else chunk
        n = len(chunk)
        seed = req.seed + ci
        if infill_audio is not None:
            wav = pipe.infill(infill_audio[0], infill_audio[1], cond, start=req.infill_start, end=req.infill_end,
                              seed=seed, **req.overrides)
        elif prompt_audio is not None:
            wav = pipe.continuation(prompt_audio[0], prompt_audio[1], cond, duration=duration, seed=seed,
                                    num_samples=n, extend_stride=req.extend_stride, **hybrid, **req.overrides)
        else:
            mel = {} if melody is None else {"melody": melody[0], "melody_sample_rate": melody[1]}
            wav = pipe.generate(cond, duration=duration, seed=seed, num_samples=n, extend_stride=req.extend_stride,
                                **mel, **hybrid, **req.overrides)
        check_finite(wav, f"batch {ci} ({n} clips)")   # before writing any file of the batch
        for j, text in enumerate(chunk):
            wav_path, png_path = paths[ci * req.batch_size + j]
            records.append({"text": text, **requests.write_clip(wav_path, wav[j], pipe.sample_rate, text or "",
                                                                 spectrogram=png_path)})
    for r in records:
        log(f"wrote {r['wav']} ({r['seconds']:.2f} s) and {r['png']}")
    return records
