"""Text -> music / sound, end to end: T5 -> MAGNeT span decoding -> EnCodec decode.

``MagnetPipeline.from_pretrained("facebook/magnet-small-10secs")`` (any of the six released ids, or a
local folder holding ``state_dict.bin`` + ``compression_state_dict.bin``) loads and converts the LM
(cached: torch is needed once), the EnCodec tokenizer the checkpoint names, and T5.
``MagnetPipeline.from_config("tiny", seed)`` builds a random-init pipeline (tests, demos, benchmarks).

Long-form (duration beyond the model's window, e.g. 10 s): windowed generation. The first window is
generated from the text alone; each next window is a continuation whose prompt is the last
``window - extend_stride`` seconds generated so far (default stride: half the window), and adds
``extend_stride`` new seconds, until the duration is reached. Every window sees the same text.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax import hub
from magnet_jax.configs import RELEASED
from magnet_jax.decoding import GenerationConfig, generate as _generate
from magnet_jax.model import MagnetLM

log = logging.getLogger("magnet_jax.pipeline")

RELEASED_IDS = tuple(r["hub"] for r in RELEASED.values())


def _config_name_of(repo_id: str) -> str:
    return repo_id.split("/")[-1].replace("-", "_")


@dataclasses.dataclass
class MagnetPipeline:
    lm: MagnetLM
    codec: object                       # magnet_jax.codec.Encodec
    tokenizer: object
    t5: Callable                        # (ids, mask) -> hidden
    generation: GenerationConfig
    name: str = ""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, name_or_path: str, *, t5: str | None = None, codec: str | None = None,
                        dtype: str = "float32") -> "MagnetPipeline":
        """A released model (hub id or local folder). ``t5`` / ``codec`` override where those come from
        (hub id or local folder), e.g. for machines without hub access."""
        from magnet_jax.convert import load_audiocraft_lm
        from magnet_jax.codec import load_encodec
        from magnet_jax.text.presets import HUB_NAMES, load_text_stack

        src = str(name_or_path)
        if not hub.is_local(src) and src not in RELEASED_IDS:
            raise hub.HubError(f"unknown model {src!r}: use one of {list(RELEASED_IDS)}, a local folder, or "
                               f"config:NAME for a random-init model")
        lm = load_audiocraft_lm(src, dtype=dtype)
        t5_name = t5 or _t5_name(src) or ("t5-base" if lm.config.text_dim == 768 else "t5-large")
        tokenizer, t5_fn = load_text_stack(HUB_NAMES.get(t5_name, t5_name), lm.config.text_dim)
        codec_model = load_encodec(codec or src, num_codebooks=lm.config.n_q)
        if codec_model.num_codebooks != lm.config.n_q or codec_model.cardinality != lm.config.card:
            raise ValueError(f"codec {codec or src!r} has {codec_model.num_codebooks} x {codec_model.cardinality} "
                             f"codes, the LM expects {lm.config.n_q} x {lm.config.card}")
        audio = "audio" in Path(src).name or lm.config.text_dim == 1024
        gen = (GenerationConfig.audio if audio else GenerationConfig.music)(lm.config.segment_duration)
        return cls(lm, codec_model, tokenizer, t5_fn, gen, name=src)

    @classmethod
    def from_config(cls, name: str = "tiny", seed: int = 0) -> "MagnetPipeline":
        """Random-init pipeline for a config (``tiny``, or a released architecture: large!). The text
        encoder is the packaged tiny tokenizer + a random T5 of the LM's text width."""
        from flax import nnx
        from magnet_jax.codec.random_init import random_encodec
        from magnet_jax.configs import get_config, model_config
        from magnet_jax.text.presets import load_text_stack

        c = get_config(name)
        mcfg = model_config(c)
        lm = MagnetLM(mcfg, rngs=nnx.Rngs(seed))
        tokenizer, t5_fn = load_text_stack("tiny", mcfg.text_dim)
        codec_model = random_encodec(sample_rate=int(c.codec.sample_rate), frame_rate=mcfg.frame_rate,
                                     num_codebooks=mcfg.n_q, bins=mcfg.card, channels=int(c.codec.channels),
                                     seed=seed)
        gen = GenerationConfig.from_dict(c.generation.to_dict())
        return cls(lm, codec_model, tokenizer, t5_fn, gen, name=f"config:{name}")

    @classmethod
    def load(cls, model: str, **kw) -> "MagnetPipeline":
        """``config:NAME`` -> :meth:`from_config`, anything else -> :meth:`from_pretrained`."""
        if model.startswith("config:"):
            return cls.from_config(model.split(":", 1)[1], seed=kw.pop("seed", 0))
        return cls.from_pretrained(model, **kw)

    # ------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.lm.config.frame_rate)

    @property
    def window_seconds(self) -> float:
        return float(self.lm.config.segment_duration)

    # ------------------------------------------------------------------ pieces
    def encode_text(self, texts: Sequence[str | None]):
        """T5 hidden states and mask with the reference semantics (pad to the longest; "" = null)."""
        from magnet_jax.text import tokenize
        ids, mask = tokenize(self.tokenizer, list(texts))
        return self.t5(ids, mask), jnp.asarray(mask)

    def encode_audio(self, wav: np.ndarray, sample_rate: int) -> jax.Array:
        """Audio ``[C, N]`` or ``[N]`` at ``sample_rate`` -> codes int32 [1, K, T] (resampled, down-mixed)."""
        from magnet_jax.data.audio_io import convert_channels, resample
        wav = np.asarray(wav, np.float32)
        if wav.ndim == 1:
            wav = wav[None]
        if wav.ndim != 2 or wav.shape[1] == 0:
            raise ValueError(f"audio must be [channels, samples] with samples > 0, got shape {wav.shape}")
        if not np.all(np.isfinite(wav)):
            raise ValueError("audio holds NaN or inf samples")
        wav = resample(convert_channels(wav, self.codec.channels), int(sample_rate), self.sample_rate)
        return self.codec.encode(jnp.asarray(wav)[None])

    def decode_codes(self, codes) -> np.ndarray:
        return np.asarray(self.codec.decode(jnp.asarray(codes)))

    def _config(self, overrides: dict) -> GenerationConfig:
        return self.generation.replace(**overrides) if overrides else self.generation

    # ------------------------------------------------------------------ generation
    def generate_codes(self, texts: Sequence[str | None] | None, *, duration: float | None = None, seed: int = 0,
                       num_samples: int | None = None, prompt=None, init_codes=None, infill_mask=None,
                       extend_stride: float | None = None, long_form: bool = True, progress=None,
                       **overrides) -> jax.Array:
        """Codes int32 [B, K, T] for ``duration`` seconds (default: the window). ``texts=None``:
        unconditional (``num_samples`` items). ``prompt``: codes [B or 1, K, P] to continue."""
        cfg = self._config(overrides)
        duration = self.window_seconds if duration is None else float(duration)
        if duration <= 0:
            raise ValueError(f"duration must be > 0, got {duration}")
        total = int(round(duration * self.frame_rate))
        window = self.lm.config.segment_frames
        if texts is not None:
            texts = list(texts)
            if not texts:
                raise ValueError("no text given (use texts=None for unconditional generation)")
            hidden, mask = self.encode_text(texts)
            B = len(texts)
        else:
            hidden = mask = None
            B = int(num_samples or (prompt.shape[0] if prompt is not None else 1))
        if prompt is not None:
            prompt = jnp.broadcast_to(jnp.asarray(prompt, jnp.int32), (B,) + tuple(prompt.shape[1:]))
        key = jax.random.key(seed)
        span = self.lm.config.span_len if cfg.span_arrangement == "nonoverlap" else 1

        def frames_for(n):  # nonoverlap returns a multiple of the span length: ask for enough, then trim
            return span * math.ceil(n / span)
        if init_codes is not None:
            T = int(init_codes.shape[-1])
            if T > window:
                raise ValueError(f"infill works within one window: {T} frames > {window}")
            pad = frames_for(T) - T   # padded frames are generated (then dropped); real context stays as is
            init = jnp.pad(jnp.asarray(init_codes, jnp.int32), ((0, 0), (0, 0), (0, pad)))
            region = jnp.pad(jnp.asarray(infill_mask, bool), ((0, 0), (0, pad)), constant_values=True)
            out = _generate(self.lm, hidden, mask, config=cfg, rng=key, prompt=prompt, infill_mask=region,
                            init_codes=init, num_frames=T + pad, num_samples=B)
            return out[..., :T]
        have = 0 if prompt is None else int(prompt.shape[-1])
        if total <= window:
            if have >= total:
                raise ValueError(f"the prompt ({have} frames) is not shorter than the duration ({total} frames)")
            out = _generate(self.lm, hidden, mask, config=cfg, rng=key, prompt=prompt, num_frames=frames_for(total),
                            num_samples=B)
            return out[..., :total]
        if not long_form:
            raise ValueError(f"duration {duration:g} s is beyond the model's {self.window_seconds:g} s window; "
                             f"enable long-form generation (windowed continuation)")
        stride = int(round((extend_stride or self.window_seconds / 2) * self.frame_rate))
        if not 0 < stride < window:
            raise ValueError(f"extend_stride must be in (0, {self.window_seconds}) seconds")
        codes = prompt
        n_windows = 1 + math.ceil(max(total - window, 0) / stride)
        it = range(n_windows)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="windows", unit="window")
        for i in it:
            context = None if codes is None else codes[..., -(window - stride):]
            out = _generate(self.lm, hidden, mask, config=cfg, rng=jax.random.fold_in(key, i), prompt=context,
                            num_frames=frames_for(window), num_samples=B)
            new = out if context is None else out[..., context.shape[-1]:]
            codes = new if codes is None else jnp.concatenate([codes, new], axis=-1)
            if codes.shape[-1] >= total:
                break
        return codes[..., :total]

    def generate(self, texts: Sequence[str | None] | None, *, duration: float | None = None, seed: int = 0,
                 **kw) -> np.ndarray:
        """Waveforms float32 [B, C, N] at :attr:`sample_rate` (N = duration x sample rate, trimmed)."""
        codes = self.generate_codes(texts, duration=duration, seed=seed, **kw)
        wav = self.decode_codes(codes)
        if duration is not None:
            wav = wav[..., :int(round(duration * self.sample_rate))]
        return wav

    def continuation(self, prompt_wav, prompt_sample_rate: int, texts: Sequence[str | None] | None, *,
                     duration: float | None = None, seed: int = 0, **kw) -> np.ndarray:
        """Continue an audio prompt: the output starts with the (re-synthesised) prompt."""
        prompt = self.encode_audio(prompt_wav, prompt_sample_rate)
        return self.generate(texts, duration=duration, seed=seed, prompt=prompt, **kw)

    def infill(self, wav, sample_rate: int, texts: Sequence[str | None] | None, *, start: float, end: float,
               seed: int = 0, **kw) -> np.ndarray:
        """Regenerate ``[start, end)`` seconds of ``wav`` (all codebooks); every other frame keeps its codes."""
        codes = self.encode_audio(wav, sample_rate)
        T = codes.shape[-1]
        a, b = int(math.floor(start * self.frame_rate)), int(math.ceil(end * self.frame_rate))
        if not 0 <= a < b <= T:
            raise ValueError(f"infill region [{start}, {end}) s is not inside the {T / self.frame_rate:.2f} s clip")
        B = 1 if texts is None else len(list(texts))
        init = jnp.broadcast_to(codes, (B,) + codes.shape[1:])
        region = jnp.zeros((B, T), bool).at[:, a:b].set(True)
        out = self.generate_codes(texts, seed=seed, init_codes=init, infill_mask=region, num_samples=B, **kw)
        return self.decode_codes(out)


def _t5_name(src: str) -> str | None:
    """The T5 named in the checkpoint's xp.cfg (from the cached conversion or the .bin file)."""
    import json
    from magnet_jax.convert.audiocraft import CONFIG_NAME
    try:
        p = Path(src)
        if p.is_dir() and (p / CONFIG_NAME).is_file():
            return json.loads((p / CONFIG_NAME).read_text()).get("t5")
        for d in hub.cache_dir("lm").iterdir():
            meta = d / CONFIG_NAME
            if meta.is_file():
                m = json.loads(meta.read_text())
                if m.get("source") == src:
                    return m.get("t5")
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------------- batch jobs
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
    offline_fallback: str | None = None
    prompt_wav: str | None = None
    infill_wav: str | None = None
    infill_start: float | None = None
    infill_end: float | None = None
    overrides: dict = dataclasses.field(default_factory=dict)
    t5: str | None = None
    codec: str | None = None


def _texts_of(req: GenerationRequest) -> list:
    texts = list(req.texts)
    if req.text_file:
        p = Path(req.text_file)
        if not p.is_file():
            raise FileNotFoundError(f"--text_file {req.text_file!r} does not exist")
        texts += [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if req.unconditional:
        if texts:
            raise ValueError("--unconditional takes no --text / --text_file")
        return [None] * req.num_samples
    if not texts:
        raise ValueError("no text: pass --text=... (repeatable) or --text_file=FILE, or --unconditional")
    if any(not t.strip() for t in texts):
        raise ValueError("empty --text: describe the audio, or use --unconditional")
    return [t for t in texts for _ in range(req.num_samples)]


def load_pipeline(model: str, offline_fallback: str | None = None, log=print, **kw) -> MagnetPipeline:
    """:meth:`MagnetPipeline.load`; on a hub error, ``offline_fallback`` (saying so) or a clear error."""
    try:
        return MagnetPipeline.load(model, **{k: v for k, v in kw.items() if v is not None})
    except hub.HubError as e:
        if not offline_fallback:
            raise ValueError(f"{e}\n(or run offline with --model=config:tiny, a random-init model)") from None
        log(f"NOTE: could not load {model!r} ({str(e).splitlines()[0][:200]}).\n"
            f"      Falling back to {offline_fallback!r}: a RANDOM-INIT model, so the audio is noise-like, "
            f"not music. Pass a local folder with the released files for real results.")
        return MagnetPipeline.load(offline_fallback)


def run_to_files(req: GenerationRequest, log=print) -> list[dict]:
    """Runs a request; writes ``out_dir/NNN_slug.wav`` + ``.png`` per clip; returns their records."""
    from magnet_jax.data.audio_io import read_audio
    from magnet_jax.export import safe_stem, save_spectrogram, write_wav

    texts = _texts_of(req)
    if (req.infill_start is None) != (req.infill_end is None) or (req.infill_start is not None and not req.infill_wav):
        raise ValueError("infill needs --infill_wav, --infill_start and --infill_end together")
    if req.prompt_wav and req.infill_wav:
        raise ValueError("use either --prompt_wav (continuation) or --infill_wav, not both")
    pipe = load_pipeline(req.model, req.offline_fallback, log, t5=req.t5, codec=req.codec)
    log(f"model {pipe.name}: window {pipe.window_seconds:g} s, {pipe.sample_rate} Hz, "
        f"steps {pipe.generation.decoding_steps}")
    duration = req.duration
    if duration is not None and duration > pipe.window_seconds and req.infill_wav:
        raise ValueError("infill works within one window")
    prompt_audio = read_audio(req.prompt_wav) if req.prompt_wav else None
    infill_audio = read_audio(req.infill_wav) if req.infill_wav else None
    from tqdm import tqdm
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
                                    num_samples=n, extend_stride=req.extend_stride, **req.overrides)
        else:
            wav = pipe.generate(cond, duration=duration, seed=seed, num_samples=n, extend_stride=req.extend_stride,
                                **req.overrides)
        for j, text in enumerate(chunk):
            idx = ci * req.batch_size + j
            stem = safe_stem(text or "", idx)
            wav_path = write_wav(Path(req.out_dir) / f"{stem}.wav", wav[j], pipe.sample_rate)
            png_path = save_spectrogram(Path(req.out_dir) / f"{stem}.png", wav[j], pipe.sample_rate, text or "")
            records.append({"text": text, "wav": str(wav_path), "png": str(png_path),
                            "seconds": wav.shape[-1] / pipe.sample_rate})
    for r in records:
        log(f"wrote {r['wav']} ({r['seconds']:.2f} s) and {r['png']}")
    return records
