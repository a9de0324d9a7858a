"""The companion MusicGen of a MAGNeT pipeline: the rescorer (paper section 3.3) and the hybrid prefix model.

``MagnetPipeline.from_pretrained(magnet_id, rescorer="facebook/musicgen-small")`` attaches one
:class:`Companion`; it rescores MAGNeT's decoding when ``GenerationConfig.rescorer_weight`` is set
(:mod:`magnet_jax.decoding.rescoring`) and generates the autoregressive prefix of
``generate(..., hybrid_prefix_seconds=P)`` (below). Both need MAGNeT's codec and
text encoder, checked when it is attached (one-line errors): sample rate, frame rate, codebooks and card of the
codec; the T5 the checkpoint names (unless ``t5=`` overrides both) and its width.

**Hybrid inference from two released models** (:func:`prefix_codes`): MusicGen writes the first seconds, MAGNeT
the rest.

``pipe.generate(texts, duration=D, hybrid_prefix_seconds=P)`` on a MAGNeT pipeline with a companion MusicGen:

1. the companion generates the first ``round(P * frame_rate)`` frames autoregressively
   (:func:`magnet_jax.decoding.musicgen.generate`, KV-cached, CFG), with key :func:`prefix_rng` ``(seed)`` and the
   companion's :class:`~magnet_jax.decoding.config.MusicGenGenerationConfig` (MusicGen-only knobs such as ``cfg_coef``
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
from flax import nnx

from magnet_jax import presets
from magnet_jax.convert import encodec as codec_loader
from magnet_jax.convert import load_audiocraft_checkpoint
from magnet_jax.decoding.config import GenerationConfig, MusicGenGenerationConfig
from magnet_jax.decoding.musicgen import generate as musicgen_generate
from magnet_jax.decoding.rescoring import check_rescorer
from magnet_jax.model import MusicGenLM
from magnet_jax.text.presets import canonical_t5_name


@dataclasses.dataclass
class Companion:
    lm: MusicGenLM
    generation: MusicGenGenerationConfig      # the hybrid prefix's sampling (audiocraft MusicGen defaults)
    name: str = ""


def _check_codec(magnet_codec, other, name: str) -> None:
    for what, attr in (("sample rate", "sample_rate"), ("frame rate", "frame_rate"), ("codebooks", "num_codebooks"),
                       ("card", "cardinality"), ("channels", "channels")):
        a, b = getattr(magnet_codec, attr), getattr(other, attr)
        if a != b:
            raise ValueError(f"rescorer {name!r}: its codec's {what} is {b}, MAGNeT's {a}; the rescorer must "
                             f"share MAGNeT's codec (e.g. facebook/musicgen-small with the 32 kHz MAGNeT models)")


def from_config(name: str, magnet_lm, magnet_codec, seed: int = 0) -> Companion:
    """A random-init MusicGen with the architecture of preset ``name`` (``config:tiny``: tests, benchmarks)."""
    p = presets.get(name)
    mcfg = presets.musicgen_config(p.model)
    if p.sample_rate != magnet_codec.sample_rate or mcfg.frame_rate != magnet_codec.frame_rate:
        raise ValueError(f"rescorer config:{name}: {p.sample_rate} Hz / {mcfg.frame_rate} Hz frames, "
                         f"MAGNeT's codec {magnet_codec.sample_rate} Hz / {magnet_codec.frame_rate:g} Hz: "
                         "pick a config with MAGNeT's codec")
    lm = MusicGenLM(mcfg, rngs=nnx.Rngs(seed + 1))
    check_rescorer(magnet_lm.config, lm.config)
    return Companion(lm, MusicGenGenerationConfig(), name=f"musicgen-config:{name}")


def load_companion(src: str, *, magnet_lm, magnet_codec, magnet_codec_source: str | None, magnet_t5: str | None,
                   t5_override: str | None = None, codec_override: str | None = None,
                   dtype: str = "float32") -> Companion:
    """Loads the MusicGen ``src`` (hub id, local folder, ``state_dict.bin`` or ``config:NAME``) and checks that it
    shares MAGNeT's codec and text encoder."""
    if src.startswith("config:"):
        return from_config(src.split(":", 1)[1], magnet_lm, magnet_codec)
    ck = load_audiocraft_checkpoint(src, dtype=dtype)
    if ck.lm_model != "transformer_lm":
        raise ValueError(f"rescorer {src!r} is a {ck.lm_model} checkpoint; give a MusicGen / AudioGen one "
                         "(xp.cfg lm_model: transformer_lm), e.g. facebook/musicgen-small")
    if t5_override is None and ck.t5_name is not None and magnet_t5 is not None and (
            (canonical_t5_name(ck.t5_name) or ck.t5_name) != (canonical_t5_name(magnet_t5) or magnet_t5)):
        raise ValueError(f"rescorer {src!r} was trained with T5 {ck.t5_name!r}, MAGNeT with {magnet_t5!r}: "
                         "the two must share the text encoder (pick a MusicGen with MAGNeT's T5)")
    codec_src = codec_override or ck.codec_source
    if codec_src != magnet_codec_source:
        _check_codec(magnet_codec, codec_loader.load_encodec(codec_src, num_codebooks=ck.lm.config.n_q), src)
    try:
        check_rescorer(magnet_lm.config, ck.lm.config)
    except ValueError as e:
        raise ValueError(f"rescorer {src!r}: {e}") from None
    return Companion(ck.lm, MusicGenGenerationConfig(), name=src)


PREFIX_STREAM = 0x4859   # fold_in constant: the prefix's key is independent of MAGNeT's key(seed) streams


def prefix_rng(seed: int):
    """The key of the MusicGen prefix for ``seed`` (MAGNeT's part uses ``jax.random.key(seed)``)."""
    return jax.random.fold_in(jax.random.key(seed), PREFIX_STREAM)


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """(MAGNeT overrides, MusicGen-only overrides): a knob MAGNeT's GenerationConfig lacks goes to the prefix."""
    magnet = {f.name for f in dataclasses.fields(GenerationConfig)}
    mg = {f.name for f in dataclasses.fields(MusicGenGenerationConfig)} - magnet
    return ({k: v for k, v in overrides.items() if k not in mg}, {k: v for k, v in overrides.items() if k in mg})


def prefix_frames(comp: Companion, prefix_seconds: float, frame_rate: float, total: int, have: int) -> int:
    """``prefix_seconds`` in frames, checked: at least one frame beyond the prompt (``have`` frames), inside the
    output (``total`` frames) and inside the companion's window (MusicGen never runs beyond it)."""
    p = float(prefix_seconds)
    n = int(round(p * frame_rate)) if np.isfinite(p) else -1
    window = comp.lm.config.segment_frames
    if not have < n < total:
        raise ValueError(f"hybrid_prefix_seconds={prefix_seconds!r} is {n} frames: give a prefix longer than the "
                         f"prompt ({have} frames) and shorter than the output ({total} frames)")
    if n > window:
        raise ValueError(f"hybrid_prefix_seconds={prefix_seconds!r} is beyond the MusicGen window "
                         f"({window / frame_rate:g} s): give at most that")
    return n


def prefix_codes(comp: Companion, hidden, mask, batch: int, prompt, n: int, seed: int,
                 overrides: dict | None = None) -> jax.Array:
    """Codes int32 [B, K, n]: the companion's first ``n`` frames (continuing ``prompt`` [B, K, P] when given),
    with key :func:`prefix_rng` ``(seed)`` and its generation config with the MusicGen-only ``overrides``
    (:func:`split_overrides`). MAGNeT continues them as its prompt (``MagnetPipeline.generate_codes``)."""
    cfg = comp.generation.replace(**overrides) if overrides else comp.generation
    start = jnp.zeros((batch, comp.lm.config.n_q, 0), jnp.int32) if prompt is None else prompt
    return musicgen_generate(comp.lm, hidden, mask, config=cfg, rng=prefix_rng(seed), num_frames=n, prompt=start)
