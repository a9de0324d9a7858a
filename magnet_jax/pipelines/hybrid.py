"""HybridMagnetPipeline: text -> music with one Hybrid-MAGNeT LM (AR prefix, then MAGNeT decoding of the rest).

``MagnetPipeline.from_pretrained`` returns it for a checkpoint whose ``xp.cfg`` is the ``hybrid_magnet``
branch's (:mod:`magnet_jax.convert.hybrid`), ``MagnetPipeline.from_config("hybrid_tiny")`` for a random one
(:mod:`magnet_jax.pipelines.load`). Text encoding, the codec, the window bound and ``generate`` (codes -> audio)
are the MAGNeT pipeline's; the codes come from :func:`magnet_jax.decoding.hybrid.generate`. Within the model's
window only (no long-form, no audio prompt, no infill: the hybrid model's prefix is its own autoregressive output).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax

from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.decoding.hybrid import DEFAULT_PREFIX_SECONDS
from magnet_jax.decoding.hybrid import generate as hybrid_generate
from magnet_jax.pipelines.base import as_texts
from magnet_jax.pipelines.magnet import MagnetPipeline


@dataclasses.dataclass
class HybridMagnetPipeline(MagnetPipeline):
    ar_generation: MusicGenGenerationConfig = dataclasses.field(default_factory=MusicGenGenerationConfig)
    prefix_seconds: float = DEFAULT_PREFIX_SECONDS

    config_family = "hybrid"

    def prefix_frames(self, prefix_seconds: float | None) -> int:
        """``prefix_seconds`` (default :attr:`prefix_seconds`) in frames, at least one."""
        return self.seconds_to_frames(self.prefix_seconds if prefix_seconds is None else prefix_seconds,
                                      "prefix_seconds")

    def generate_codes(self, texts: Sequence[str | None] | str | None, *, duration: float | None = None,
                       seed: int = 0, num_samples: int | None = None, prompt=None, init_codes=None, infill_mask=None,
                       prefix_seconds: float | None = None, ar_config: MusicGenGenerationConfig | None = None,
                       extend_stride: float | None = None, long_form: bool = True, progress=None,
                       hybrid_prefix_seconds: float | None = None, **overrides) -> jax.Array:
        """Codes int32 [B, K, T] for ``duration`` seconds (default: the window): the first ``prefix_seconds``
        (default :attr:`prefix_seconds`; ``hybrid_prefix_seconds``, MagnetPipeline's name, is the same) by this
        model autoregressively with ``ar_config`` (default :attr:`ar_generation`), the rest by MAGNeT decoding
        (``overrides``: :class:`GenerationConfig` fields)."""
        if hybrid_prefix_seconds is not None:
            if prefix_seconds is not None and float(prefix_seconds) != float(hybrid_prefix_seconds):
                raise ValueError("give prefix_seconds or hybrid_prefix_seconds, not two different values")
            prefix_seconds = hybrid_prefix_seconds
        if prompt is not None or init_codes is not None or infill_mask is not None:
            raise ValueError("Hybrid-MAGNeT generates its own autoregressive prefix: audio prompts (continuation) "
                             "and infill are not supported; use a MAGNeT model for those")
        cfg = self._config(overrides)
        texts = as_texts(texts)
        total = self.check_duration(self.window_seconds if duration is None else duration)
        usable = self.lm_frames(cfg)
        if total > usable:
            raise ValueError(f"duration {total / self.frame_rate:g} s is beyond the hybrid model's "
                             f"{usable / self.frame_rate:g} s window (long-form is not supported for Hybrid-MAGNeT)")
        P = self.prefix_frames(prefix_seconds)
        span = self._span(cfg)
        n = min(span * math.ceil(total / span), usable)
        if P >= n:
            raise ValueError(f"prefix of {P} frames ({P / self.frame_rate:g} s) is not shorter than the "
                             f"{n} frames generated: lower prefix_seconds or raise duration")
        cond = self.condition(texts, num_samples, None)
        codes = hybrid_generate(self.lm, cond.hidden, cond.mask, config=cfg, ar_config=ar_config or self.ar_generation,
                                prefix_frames=P, rng=jax.random.key(seed), num_frames=n,
                                num_samples=None if texts is not None else cond.batch)
        return codes[..., :total]
