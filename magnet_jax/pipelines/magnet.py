"""MagnetPipeline: text -> music / sound with MAGNeT (T5 -> MAGNeT span decoding -> codec decode).

``MagnetPipeline.from_pretrained("facebook/magnet-small-10secs")`` (a hub id or a local folder holding
``state_dict.bin`` + ``compression_state_dict.bin``) loads and converts the LM (cached), the EnCodec tokenizer
the checkpoint names, and T5; ``MagnetPipeline.from_config("tiny", seed)`` builds a random-init pipeline. Both
return the pipeline of the checkpoint's or preset's family (:mod:`magnet_jax.pipelines.load`).

The LM never runs beyond its trained window: with ``nonoverlap`` spans one call yields the window less its
last partial span (500 -> 498 frames for 10 s, as audiocraft's ``MAGNeT.generate``), for single windows,
long-form windows and infill alike.

Long-form (duration beyond the model's window, e.g. 10 s): windowed generation. The first window is
generated from the text alone; each next window is a continuation whose prompt is the last
``window - extend_stride`` seconds generated so far (default stride: half the window); every window is a
whole window (the last one is trimmed), as MAGNeT was trained at a fixed length. Every window sees the same text.

``rescorer=`` attaches a companion MusicGen (:mod:`magnet_jax.pipelines.companion`): it rescores the decoding when
``GenerationConfig.rescorer_weight`` is set, and writes the first seconds of ``generate(...,
hybrid_prefix_seconds=P)``, which MAGNeT then continues.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.decoding.config import GenerationConfig
from magnet_jax.decoding.magnet import generate as _generate
from magnet_jax.pipelines import companion
from magnet_jax.pipelines.base import Conditioning, TextToAudioPipeline, as_texts
from magnet_jax.util import deadline


@dataclasses.dataclass
class MagnetPipeline(TextToAudioPipeline):
    generation: GenerationConfig
    rescorer: companion.Companion | None = None    # rescoring, hybrid prefixes

    @classmethod
    def default_generation(cls, kind: str, segment_duration: float) -> GenerationConfig:
        return GenerationConfig.for_model(kind, segment_duration)

    def _span(self, config: GenerationConfig) -> int:
        """The frames a decoding step fills at once: the span with ``nonoverlap``, else 1."""
        return self.lm.config.span_len if config.span_arrangement == "nonoverlap" else 1

    def lm_frames(self, config: GenerationConfig | None = None) -> int:
        """The most frames one LM call yields: the trained window, less its last partial span with
        ``nonoverlap`` (audiocraft trims 500 -> 498 for a 10 s model). The LM never runs on more."""
        span = self._span(config or self.generation)
        return span * (self.lm.config.segment_frames // span)

    # ------------------------------------------------------------------ generation
    def generate_codes(self, texts: Sequence[str | None] | str | None, *, duration: float | None = None,
                       seed: int = 0, num_samples: int | None = None, prompt=None, init_codes=None, infill_mask=None,
                       extend_stride: float | None = None, long_form: bool = True, progress=None,
                       hybrid_prefix_seconds: float | None = None, **overrides) -> jax.Array:
        """Codes int32 [B, K, T] for ``duration`` seconds (default: the window). ``texts=None``:
        unconditional (``num_samples`` items); a bare string is one text. ``prompt``: codes [B or 1, K, P]
        to continue. ``init_codes`` [B, K, T] + ``infill_mask`` [B, T] (True = regenerate): infill.

        Window bound (as audiocraft): every LM call runs on at most :meth:`lm_frames` frames, so a duration
        inside the window's last partial span (``nonoverlap``: 9.96-10 s of a 10 s model) yields
        :meth:`lm_frames` frames, exactly ``MAGNeT.generate``'s codes; longer durations are long-form.

        ``hybrid_prefix_seconds=P``: the companion MusicGen writes the first ``P`` seconds (continuing
        ``prompt``), MAGNeT continues them (:mod:`magnet_jax.pipelines.companion`); MusicGen-only ``overrides``
        (``cfg_coef``, ``two_step_cfg``) go to the prefix."""
        prefix_overrides = {}
        if hybrid_prefix_seconds is not None:
            if self.rescorer is None:
                raise ValueError("hybrid_prefix_seconds needs a MusicGen: MagnetPipeline.from_pretrained(magnet_id, "
                                 "rescorer='facebook/musicgen-small') (tools/generate.py --rescorer=...)")
            if init_codes is not None or infill_mask is not None:
                raise ValueError("hybrid_prefix_seconds does not apply to infill: use one or the other")
            overrides, prefix_overrides = companion.split_overrides(overrides)
        cfg = self._config(overrides)
        texts = as_texts(texts)
        total = self.check_duration(self.window_seconds if duration is None else duration)
        cond = self.condition(texts, num_samples, prompt)
        if hybrid_prefix_seconds is not None:
            have = 0 if cond.prompt is None else int(cond.prompt.shape[-1])
            n = companion.prefix_frames(self.rescorer, hybrid_prefix_seconds, self.frame_rate, total, have)
            cond = cond._replace(prompt=companion.prefix_codes(self.rescorer, cond.hidden, cond.mask, cond.batch,
                                                               cond.prompt, n, seed, prefix_overrides))
        key = jax.random.key(seed)
        if init_codes is not None:
            return self._infill(cfg, cond, key, init_codes, infill_mask)
        if total <= self.lm.config.segment_frames:
            return self._single_window(cfg, cond, key, total)
        if not long_form:
            raise ValueError(f"duration {total / self.frame_rate:g} s is beyond the model's {self.window_seconds:g} s "
                             f"window; enable long-form generation (windowed continuation)")
        return self._long_form(cfg, cond, key, total, extend_stride, progress)

    def _run(self, cfg: GenerationConfig, cond: Conditioning, n: int, **kw) -> jax.Array:
        """One LM call on ``n`` <= window frames (``nonoverlap`` returns ``span * (n // span)``)."""
        assert n <= self.lm.config.segment_frames, (n, self.lm.config.segment_frames)
        deadline.check()    # a per-request time limit (the web app), checked before each LM call
        rescorer = None if self.rescorer is None else self.rescorer.lm
        return _generate(self.lm, cond.hidden, cond.mask, config=cfg, num_frames=n, num_samples=cond.batch,
                         rescorer=rescorer, **kw)

    def _single_window(self, cfg: GenerationConfig, cond: Conditioning, key, total: int) -> jax.Array:
        """``total`` <= window frames in one LM call: enough frames, a multiple of the span where the window
        allows, trimmed to ``total``."""
        usable = self.lm_frames(cfg)
        have = 0 if cond.prompt is None else int(cond.prompt.shape[-1])
        if have >= min(total, usable):
            raise ValueError(f"the prompt ({have} frames) is not shorter than the output ({min(total, usable)} frames)")
        span = self._span(cfg)
        n = min(span * math.ceil(total / span), self.lm.config.segment_frames)
        return self._run(cfg, cond, n, rng=key, prompt=cond.prompt)[..., :total]

    def _long_form(self, cfg: GenerationConfig, cond: Conditioning, key, total: int, extend_stride: float | None,
                   progress) -> jax.Array:
        """Whole windows, each continuing the last ``window - stride`` frames of the one before."""
        window, usable = self.lm.config.segment_frames, self.lm_frames(cfg)
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
        codes = cond.prompt
        for i in it:
            context = None if codes is None else codes[..., -context_len:]
            out = self._run(cfg, cond, window, rng=jax.random.fold_in(key, i), prompt=context)
            new = out if context is None else out[..., context.shape[-1]:]
            codes = new if codes is None else jnp.concatenate([codes, new], axis=-1)
            if codes.shape[-1] >= total:
                break
        return codes[..., :total]

    def _infill(self, cfg: GenerationConfig, cond: Conditioning, key, init_codes, infill_mask) -> jax.Array:
        """Infill within one window: padded to a multiple of the span (the padding is generated, then dropped)
        when that fits the window; else (nonoverlap, T in the window's last partial span) two LM calls of
        :meth:`lm_frames` frames: the head ``[0, usable)``, then what is left of the region in the tail."""
        init = jnp.asarray(init_codes, jnp.int32)
        region = jnp.asarray(infill_mask, bool)
        T, window, usable = int(init.shape[-1]), self.lm.config.segment_frames, self.lm_frames(cfg)
        if T > window:
            raise ValueError(f"infill works within one window: {T} frames > {window}")
        span = self._span(cfg)
        n = span * math.ceil(T / span)
        if n <= window:
            pad = n - T
            out = self._run(cfg, cond, n, rng=key, prompt=cond.prompt,
                            init_codes=jnp.pad(init, ((0, 0), (0, 0), (0, pad))),
                            infill_mask=jnp.pad(region, ((0, 0), (0, pad)), constant_values=True))
            return out[..., :T]
        out = init
        if bool(region[:, :usable].any()):
            head = self._run(cfg, cond, usable, rng=key, prompt=cond.prompt, init_codes=out[..., :usable],
                             infill_mask=region[:, :usable])
            out = out.at[..., :usable].set(head)
        tail = region.at[:, :usable].set(False)[:, T - usable:]
        if bool(tail.any()):
            gen = self._run(cfg, cond, usable, rng=jax.random.fold_in(key, 1), init_codes=out[..., T - usable:],
                            infill_mask=tail)
            out = out.at[..., T - usable:].set(gen)
        return out

    def infill(self, wav, sample_rate: int, texts: Sequence[str | None] | None, *, start: float, end: float,
               seed: int = 0, **kw) -> np.ndarray:
        """Regenerate ``[start, end)`` seconds of ``wav`` (all codebooks); every other frame keeps its codes."""
        codes = self.encode_audio(wav, sample_rate)
        T = codes.shape[-1]
        a, b = int(math.floor(start * self.frame_rate)), int(math.ceil(end * self.frame_rate))
        if not 0 <= a < b <= T:
            raise ValueError(f"infill region [{start}, {end}) s is not inside the {T / self.frame_rate:.2f} s clip")
        texts = as_texts(texts)
        B = 1 if texts is None else len(texts)
        init = jnp.broadcast_to(codes, (B,) + codes.shape[1:])
        region = jnp.zeros((B, T), bool).at[:, a:b].set(True)
        out = self.generate_codes(texts, seed=seed, init_codes=init, infill_mask=region, num_samples=B, **kw)
        return self.decode_codes(out)
