"""Text -> music / sound, end to end: T5 -> MAGNeT span decoding -> EnCodec decode.

``MagnetPipeline.from_pretrained("facebook/magnet-small-10secs")`` (a hub id or a local folder holding
``state_dict.bin`` + ``compression_state_dict.bin``) loads and converts the LM (cached), the EnCodec tokenizer
the checkpoint names, and T5. ``MagnetPipeline.from_config("tiny", seed)`` builds a random-init pipeline.

The LM never runs beyond its trained window: with ``nonoverlap`` spans one call yields the window less its
last partial span (500 -> 498 frames for 10 s, as audiocraft's ``MAGNeT.generate``), for single windows,
long-form windows and infill alike.

Long-form (duration beyond the model's window, e.g. 10 s): windowed generation. The first window is
generated from the text alone; each next window is a continuation whose prompt is the last
``window - extend_stride`` seconds generated so far (default stride: half the window); every window is a
whole window (the last one is trimmed), as MAGNeT was trained at a fixed length. Every window sees the same text.

``rescorer=`` attaches a companion MusicGen (:mod:`magnet_jax.pipelines.companion`): it rescores the decoding when
``GenerationConfig.rescorer_weight`` is set, and writes the first seconds of ``generate(...,
hybrid_prefix_seconds=P)`` (:mod:`magnet_jax.pipelines.companion`).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.configs import RELEASED
from magnet_jax.decoding import GenerationConfig
from magnet_jax.decoding.magnet import generate as _generate
from magnet_jax.model import MagnetLM
from magnet_jax.util import deadline

log = logging.getLogger("magnet_jax.pipelines.magnet")

RELEASED_IDS = tuple(r["hub"] for r in RELEASED.values())


@dataclasses.dataclass
class MagnetPipeline:
    lm: MagnetLM
    codec: object                       # magnet_jax.codec.Encodec
    tokenizer: object
    t5: Callable                        # (ids, mask) -> hidden
    generation: GenerationConfig
    name: str = ""
    rescorer: object | None = None      # magnet_jax.pipelines.companion.Companion (rescoring, hybrid prefixes)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, name_or_path: str, *, t5: str | None = None, codec: str | None = None,
                        dtype: str = "float32", rescorer: str | None = None) -> "MagnetPipeline":
        """A MAGNeT checkpoint: a hub repo id (the six released ones or any repo in their layout), a local
        folder, a ``state_dict.bin`` path, or ``"bundled"`` (the offline model shipped in the package). The T5,
        music vs audio and the codec come from the checkpoint; ``t5`` / ``codec`` override where those come
        from (hub id or local folder). ``rescorer``: a MusicGen (hub id, folder or ``config:NAME``) sharing the
        codec and T5, for rescoring and hybrid prefixes (:mod:`magnet_jax.pipelines.companion`)."""
        from magnet_jax.bundled.package import resolve as resolve_bundled
        from magnet_jax.codec import load_encodec
        from magnet_jax.convert import load_audiocraft_checkpoint
        from magnet_jax.convert.t5 import load_text_stack
        from magnet_jax.pipelines.companion import load_companion

        src = str(name_or_path)
        bundled = resolve_bundled(src)   # "bundled" or a folder with lm/ codec/ t5/ (magnet_jax/bundled/package)
        if bundled is not None:
            t5, codec = t5 or str(bundled / "t5"), codec or str(bundled / "codec")
        ck = load_audiocraft_checkpoint(str(bundled / "lm") if bundled is not None else src, dtype=dtype)
        lm = ck.lm
        t5_name = t5 or ck.t5_name
        if t5_name is None:
            raise ValueError(f"{src!r} does not record which T5 it was trained with: pass t5=NAME_OR_FOLDER")
        tokenizer, t5_fn = load_text_stack(t5_name, lm.config.text_dim)
        codec_src = codec or ck.codec_source
        codec_model = load_encodec(codec_src, num_codebooks=lm.config.n_q // ck.channels)
        if ck.channels == 2:   # stereo MusicGen: the mono codec per channel, codebooks interleaved
            from magnet_jax.codec.stereo import StereoCodec
            codec_model = StereoCodec(codec_model)
        if codec_model.num_codebooks != lm.config.n_q or codec_model.cardinality != lm.config.card:
            raise ValueError(f"codec {codec_src!r} has {codec_model.num_codebooks} x {codec_model.cardinality} "
                             f"codes, the LM expects {lm.config.n_q} x {lm.config.card}")
        if ck.lm_model == "transformer_lm":   # MusicGen / AudioGen: the autoregressive sibling pipeline
            if rescorer is not None:
                raise ValueError(f"rescorer= applies to MAGNeT models; {src!r} is a MusicGen checkpoint")
            from magnet_jax.pipelines.musicgen import MusicGenPipeline  # function-level: it subclasses this one
            return MusicGenPipeline(lm, codec_model, tokenizer, t5_fn, name=src)
        gen = GenerationConfig.for_model(ck.kind, ck.segment_duration)
        if ck.lm_model == "hybrid_magnet":   # Hybrid-MAGNeT (convert/hybrid.py): one LM, AR prefix + MAGNeT rest
            if rescorer is not None:
                raise ValueError(f"rescorer= is not supported with a Hybrid-MAGNeT checkpoint ({src!r})")
            from magnet_jax.pipelines.hybrid import HybridMagnetPipeline  # function-level: it subclasses this one
            return HybridMagnetPipeline(lm, codec_model, tokenizer, t5_fn, gen, name=src)
        companion = None if rescorer is None else load_companion(
            str(rescorer), magnet_lm=lm, magnet_codec=codec_model, magnet_codec_source=codec_src, magnet_t5=t5_name,
            t5_override=t5, codec_override=codec, dtype=dtype)
        return cls(lm, codec_model, tokenizer, t5_fn, gen, name=src, rescorer=companion)

    @classmethod
    def from_config(cls, name: str = "tiny", seed: int = 0, rescorer: str | None = None) -> "MagnetPipeline":
        """Random-init pipeline for a config (``tiny``, or a released architecture: large!). The text
        encoder is the packaged tiny tokenizer + a random T5 of the LM's text width. ``rescorer``: as
        :meth:`from_pretrained` (``config:NAME`` for a random-init MusicGen)."""
        from flax import nnx

        from magnet_jax.codec.random_init import random_encodec
        from magnet_jax.configs import get_config, model_config
        from magnet_jax.convert.t5 import load_text_stack

        c = get_config(name)
        if c.get("objective") == "hybrid" and cls is MagnetPipeline:   # hybrid_NAME: one Hybrid-MAGNeT LM
            from magnet_jax.pipelines.hybrid import HybridMagnetPipeline
            return HybridMagnetPipeline.from_config(name, seed)
        mcfg = model_config(c)
        lm = MagnetLM(mcfg, rngs=nnx.Rngs(seed))
        tokenizer, t5_fn = load_text_stack("tiny", mcfg.text_dim)
        codec_model = random_encodec(sample_rate=int(c.codec.sample_rate), frame_rate=mcfg.frame_rate,
                                     num_codebooks=mcfg.n_q, bins=mcfg.card, channels=int(c.codec.channels),
                                     seed=seed)
        gen = GenerationConfig.from_dict(c.generation.to_dict())
        companion = None
        if rescorer is not None:
            from magnet_jax.pipelines.companion import load_companion
            companion = load_companion(str(rescorer), magnet_lm=lm, magnet_codec=codec_model, magnet_codec_source=None,
                                       magnet_t5="tiny")
        return cls(lm, codec_model, tokenizer, t5_fn, gen, name=f"config:{name}", rescorer=companion)

    @classmethod
    def load(cls, model: str, **kw) -> "MagnetPipeline":
        """``config:NAME`` -> :meth:`from_config`, anything else -> :meth:`from_pretrained`."""
        if model.startswith("config:"):
            return cls.from_config(model.split(":", 1)[1], seed=kw.pop("seed", 0), rescorer=kw.pop("rescorer", None))
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

    def condition(self, texts: list | None, num_samples: int | None, prompt):
        """(T5 states, mask, batch size, prompt broadcast to the batch) for a generate call; ``texts=None``:
        unconditional, ``num_samples`` items (default: the prompt's batch, else 1)."""
        if texts is not None:
            if not texts:
                raise ValueError("no text given (use texts=None for unconditional generation)")
            hidden, mask = self.encode_text(texts)
            B = len(texts)
        else:
            from magnet_jax.util.user_input import count
            hidden = mask = None
            B = count("num_samples", num_samples) if num_samples is not None else (
                prompt.shape[0] if prompt is not None else 1)
        if prompt is not None:
            prompt = jnp.broadcast_to(jnp.asarray(prompt, jnp.int32), (B,) + tuple(prompt.shape[1:]))
        return hidden, mask, B, prompt

    def decode_codes(self, codes) -> np.ndarray:
        return np.asarray(self.codec.decode(jnp.asarray(codes)))

    def _config(self, overrides: dict) -> GenerationConfig:
        if not overrides:
            return self.generation
        known = {f.name for f in dataclasses.fields(self.generation)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"unknown generation parameter(s) {bad} for {type(self).__name__}; known: {sorted(known)}")
        return self.generation.replace(**overrides)

    # ------------------------------------------------------------------ generation
    def lm_frames(self, config: GenerationConfig | None = None) -> int:
        """The most frames one LM call yields: the trained window, less its last partial span with
        ``nonoverlap`` (audiocraft trims 500 -> 498 for a 10 s model). The LM never runs on more."""
        c = self.lm.config
        span = c.span_len if (config or self.generation).span_arrangement == "nonoverlap" else 1
        return span * (c.segment_frames // span)

    def check_duration(self, duration: float) -> int:
        """``duration`` in frames; a clear error when it is not a finite number of at least one frame."""
        d = float(duration)
        total = int(round(d * self.frame_rate)) if math.isfinite(d) else 0
        if total < 1:
            raise ValueError(f"duration {duration!r} s: give a finite number of seconds, at least one frame "
                             f"({1 / self.frame_rate:g} s)")
        return total

    def generate_codes(self, texts: Sequence[str | None] | str | None, *, duration: float | None = None,
                       seed: int = 0, num_samples: int | None = None, prompt=None, init_codes=None, infill_mask=None,
                       extend_stride: float | None = None, long_form: bool = True, progress=None,
                       hybrid_prefix_seconds: float | None = None, **overrides) -> jax.Array:
        """Codes int32 [B, K, T] for ``duration`` seconds (default: the window). ``texts=None``:
        unconditional (``num_samples`` items); a bare string is one text. ``prompt``: codes [B or 1, K, P]
        to continue.

        Window bound (as audiocraft): every LM call runs on at most :meth:`lm_frames` frames, so a duration
        inside the window's last partial span (``nonoverlap``: 9.96-10 s of a 10 s model) yields
        :meth:`lm_frames` frames, exactly ``MAGNeT.generate``'s codes; longer durations are long-form.

        ``hybrid_prefix_seconds=P``: the companion MusicGen writes the first ``P`` seconds, MAGNeT continues
        (:mod:`magnet_jax.pipelines.companion`)."""
        if hybrid_prefix_seconds is not None:
            from magnet_jax.pipelines.companion import hybrid_codes
            return hybrid_codes(self, texts, prefix_seconds=hybrid_prefix_seconds, duration=duration, seed=seed,
                                num_samples=num_samples, prompt=prompt, init_codes=init_codes, infill_mask=infill_mask,
                                extend_stride=extend_stride, long_form=long_form, progress=progress, **overrides)
        cfg = self._config(overrides)
        texts = _as_texts(texts)
        window = self.lm.config.segment_frames
        usable = self.lm_frames(cfg)
        total = self.check_duration(self.window_seconds if duration is None else duration)
        hidden, mask, B, prompt = self.condition(texts, num_samples, prompt)
        key = jax.random.key(seed)
        rescorer = None if self.rescorer is None else self.rescorer.lm
        span = self.lm.config.span_len if cfg.span_arrangement == "nonoverlap" else 1

        def run(n, **kw):   # one LM call on n <= window frames (nonoverlap returns span * (n // span))
            assert n <= window, (n, window)
            deadline.check()    # a per-request time limit (the web app), checked before each LM call
            return _generate(self.lm, hidden, mask, config=cfg, num_frames=n, num_samples=B, rescorer=rescorer, **kw)

        def frames_for(n):  # enough frames for n, a multiple of the span where the window allows
            return min(span * math.ceil(n / span), window)
        if init_codes is not None:
            n = span * math.ceil(int(init_codes.shape[-1]) / span)
            return self._infill_codes(run, n, usable, key, prompt, init_codes, infill_mask)
        have = 0 if prompt is None else int(prompt.shape[-1])
        if total <= window:
            if have >= min(total, usable):
                raise ValueError(f"the prompt ({have} frames) is not shorter than the output "
                                 f"({min(total, usable)} frames)")
            return run(frames_for(total), rng=key, prompt=prompt)[..., :total]
        if not long_form:
            raise ValueError(f"duration {total / self.frame_rate:g} s is beyond the model's {self.window_seconds:g} s "
                             f"window; enable long-form generation (windowed continuation)")
        stride = int(round((extend_stride or self.window_seconds / 2) * self.frame_rate))
        if not window - usable < stride < window:
            raise ValueError(f"extend_stride must be in ({(window - usable) / self.frame_rate:g}, "
                             f"{self.window_seconds:g}) seconds")
        context_len = window - stride           # each next window continues the last context_len frames
        n_windows = 1 + math.ceil(max(total - usable, 0) / (usable - context_len))
        it = range(n_windows)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="windows", unit="window")
        codes = prompt
        for i in it:
            context = None if codes is None else codes[..., -context_len:]
            out = run(window, rng=jax.random.fold_in(key, i), prompt=context)
            new = out if context is None else out[..., context.shape[-1]:]
            codes = new if codes is None else jnp.concatenate([codes, new], axis=-1)
            if codes.shape[-1] >= total:
                break
        return codes[..., :total]

    def _infill_codes(self, run, n, usable, key, prompt, init_codes, infill_mask):
        """Infill within one window: padded to ``n`` frames (a multiple of the span; the padding is generated,
        then dropped) when that fits the window; else (nonoverlap, T in the window's last partial span) two LM calls of
        ``usable`` frames: the head ``[0, usable)``, then what is left of the region in the tail."""
        init = jnp.asarray(init_codes, jnp.int32)
        region = jnp.asarray(infill_mask, bool)
        T = int(init.shape[-1])
        if T > self.lm.config.segment_frames:
            raise ValueError(f"infill works within one window: {T} frames > {self.lm.config.segment_frames}")
        if n <= self.lm.config.segment_frames:
            pad = n - T
            out = run(n, rng=key, prompt=prompt, init_codes=jnp.pad(init, ((0, 0), (0, 0), (0, pad))),
                      infill_mask=jnp.pad(region, ((0, 0), (0, pad)), constant_values=True))
            return out[..., :T]
        out = init
        if bool(region[:, :usable].any()):
            head = run(usable, rng=key, prompt=prompt, init_codes=out[..., :usable], infill_mask=region[:, :usable])
            out = out.at[..., :usable].set(head)
        tail = region.at[:, :usable].set(False)[:, T - usable:]
        if bool(tail.any()):
            gen = run(usable, rng=jax.random.fold_in(key, 1), init_codes=out[..., T - usable:], infill_mask=tail)
            out = out.at[..., T - usable:].set(gen)
        return out

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
        texts = _as_texts(texts)
        B = 1 if texts is None else len(texts)
        init = jnp.broadcast_to(codes, (B,) + codes.shape[1:])
        region = jnp.zeros((B, T), bool).at[:, a:b].set(True)
        out = self.generate_codes(texts, seed=seed, init_codes=init, infill_mask=region, num_samples=B, **kw)
        return self.decode_codes(out)


def _as_texts(texts):
    """``None`` (unconditional), one bare string (one text, not one per character), or a sequence of strings
    (bytes or numbers are a :class:`~magnet_jax.util.user_input.UserError`, never one clip per element)."""
    from magnet_jax.util import user_input
    return user_input.texts(texts)
