"""Hybrid inference from two released models: MusicGen writes the first seconds, MAGNeT the rest.

``pipe.generate(texts, duration=D, hybrid_prefix_seconds=P)`` on a :class:`~magnet_jax.pipeline.MagnetPipeline`
with a companion MusicGen (``from_pretrained(magnet_id, rescorer="facebook/musicgen-small")``,
:mod:`magnet_jax.companion`):

1. the companion generates the first ``round(P * frame_rate)`` frames autoregressively
   (:func:`magnet_jax.musicgen.generate`, KV-cached, CFG), with key :func:`prefix_rng` ``(seed)`` and the
   companion's :class:`~magnet_jax.musicgen.MusicGenGenerationConfig` (MusicGen-only knobs such as ``cfg_coef``
   or ``two_step_cfg`` may be passed as overrides; the shared names ``temp`` / ``top_k`` / ``top_p`` /
   ``use_sampling`` stay MAGNeT's);
2. MAGNeT continues them to ``D`` seconds as an ordinary prompted generation (``generate_codes(prompt=prefix,
   seed=seed)``: the prefix frames are kept on every codebook and never re-masked; long-form beyond the window).

This is the paper's Hybrid-MAGNeT inference recipe with two separately trained models (the single jointly
trained Hybrid-MAGNeT is a different model). An audio ``prompt`` is continued by MusicGen up to ``P`` seconds.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.decoding.config import GenerationConfig
from magnet_jax.musicgen.config import MusicGenGenerationConfig
from magnet_jax.musicgen.generate import generate as musicgen_generate

PREFIX_STREAM = 0x4859   # fold_in constant: the prefix's key is independent of MAGNeT's key(seed) streams


def prefix_rng(seed: int):
    """The key of the MusicGen prefix for ``seed`` (MAGNeT's part uses ``jax.random.key(seed)``)."""
    return jax.random.fold_in(jax.random.key(seed), PREFIX_STREAM)


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """(MAGNeT overrides, MusicGen-only overrides): a knob MAGNeT's GenerationConfig lacks goes to the prefix."""
    magnet = {f.name for f in dataclasses.fields(GenerationConfig)}
    mg = {f.name for f in dataclasses.fields(MusicGenGenerationConfig)} - magnet
    return ({k: v for k, v in overrides.items() if k not in mg}, {k: v for k, v in overrides.items() if k in mg})


def prefix_frames(pipe, prefix_seconds: float, total: int, have: int) -> int:
    """``prefix_seconds`` in frames, checked: at least one frame beyond the prompt, inside the output and
    inside the companion's window (MusicGen never runs beyond it)."""
    p = float(prefix_seconds)
    n = int(round(p * pipe.frame_rate)) if np.isfinite(p) else -1
    window = pipe.rescorer.lm.config.segment_frames
    if not have < n < total:
        raise ValueError(f"hybrid_prefix_seconds={prefix_seconds!r} is {n} frames: give a prefix longer than the "
                         f"prompt ({have} frames) and shorter than the output ({total} frames)")
    if n > window:
        raise ValueError(f"hybrid_prefix_seconds={prefix_seconds!r} is beyond the MusicGen window "
                         f"({window / pipe.frame_rate:g} s): give at most that")
    return n


def hybrid_codes(pipe, texts, *, prefix_seconds: float, duration: float | None = None, seed: int = 0,
                 num_samples: int | None = None, prompt=None, init_codes=None, infill_mask=None,
                 **kw) -> jax.Array:
    """Codes int32 [B, K, T]: MusicGen's ``prefix_seconds``, then MAGNeT's continuation (see the module doc).
    ``kw``: ``generate_codes``' long-form options and generation overrides."""
    from magnet_jax.pipeline import _as_texts
    if pipe.rescorer is None:
        raise ValueError("hybrid_prefix_seconds needs a MusicGen: MagnetPipeline.from_pretrained(magnet_id, "
                         "rescorer='facebook/musicgen-small') (tools/generate.py --rescorer=...)")
    if init_codes is not None or infill_mask is not None:
        raise ValueError("hybrid_prefix_seconds does not apply to infill: use one or the other")
    overrides, mg_overrides = split_overrides({k: v for k, v in kw.items()
                                               if k not in ("extend_stride", "long_form", "progress")})
    options = {k: v for k, v in kw.items() if k in ("extend_stride", "long_form", "progress")}
    texts = _as_texts(texts)
    total = pipe.check_duration(pipe.window_seconds if duration is None else duration)
    hidden, mask, B, prompt = pipe.condition(texts, num_samples, prompt)
    have = 0 if prompt is None else int(prompt.shape[-1])
    n = prefix_frames(pipe, prefix_seconds, total, have)
    mg_cfg = pipe.rescorer.generation.replace(**mg_overrides) if mg_overrides else pipe.rescorer.generation
    start = jnp.zeros((B, pipe.lm.config.n_q, 0), jnp.int32) if prompt is None else prompt
    prefix = musicgen_generate(pipe.rescorer.lm, hidden, mask, config=mg_cfg, rng=prefix_rng(seed), num_frames=n,
                               prompt=start)
    return pipe.generate_codes(texts, duration=duration, seed=seed, num_samples=B, prompt=prefix,
                               **options, **overrides)
