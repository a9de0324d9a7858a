"""The companion MusicGen of a MAGNeT pipeline: the rescorer (paper section 3.3) and the hybrid prefix model.

``MagnetPipeline.from_pretrained(magnet_id, rescorer="facebook/musicgen-small")`` attaches one
:class:`Companion`; it rescores MAGNeT's decoding when ``GenerationConfig.rescorer_weight`` is set
(:mod:`magnet_jax.decoding.rescoring`) and generates the autoregressive prefix of
``generate(..., hybrid_prefix_seconds=P)`` (:mod:`magnet_jax.hybrid_inference`). Both need MAGNeT's codec and
text encoder, checked when it is attached (one-line errors): sample rate, frame rate, codebooks and card of the
codec; the T5 the checkpoint names (unless ``t5=`` overrides both) and its width.
"""
from __future__ import annotations

import dataclasses

from magnet_jax.decoding.rescoring import check_rescorer
from magnet_jax.model import MusicGenLM
from magnet_jax.musicgen.config import MusicGenGenerationConfig


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
    """A random-init MusicGen with the architecture of config ``name`` (``config:tiny``: tests, benchmarks)."""
    from flax import nnx

    from magnet_jax.configs import get_config, model_config
    from magnet_jax.model import MusicGenConfig
    c = get_config(name)
    mcfg = model_config(c)
    if int(c.codec.sample_rate) != magnet_codec.sample_rate or mcfg.frame_rate != magnet_codec.frame_rate:
        raise ValueError(f"rescorer config:{name}: {int(c.codec.sample_rate)} Hz / {mcfg.frame_rate} Hz frames, "
                         f"MAGNeT's codec {magnet_codec.sample_rate} Hz / {magnet_codec.frame_rate:g} Hz: "
                         "pick a config with MAGNeT's codec")
    shared = {f: getattr(mcfg, f) for f in MusicGenConfig.__dataclass_fields__ if f in mcfg.__dataclass_fields__}
    lm = MusicGenLM(MusicGenConfig(**shared), rngs=nnx.Rngs(seed + 1))
    check_rescorer(magnet_lm.config, lm.config)
    return Companion(lm, MusicGenGenerationConfig(), name=f"musicgen-config:{name}")


def load_companion(src: str, *, magnet_lm, magnet_codec, magnet_codec_source: str | None, magnet_t5: str | None,
                   t5_override: str | None = None, codec_override: str | None = None,
                   dtype: str = "float32") -> Companion:
    """Loads the MusicGen ``src`` (hub id, local folder, ``state_dict.bin`` or ``config:NAME``) and checks that it
    shares MAGNeT's codec and text encoder."""
    if src.startswith("config:"):
        return from_config(src.split(":", 1)[1], magnet_lm, magnet_codec)
    from magnet_jax.codec import load_encodec
    from magnet_jax.convert import load_audiocraft_checkpoint
    from magnet_jax.text.presets import canonical_t5_name

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
        _check_codec(magnet_codec, load_encodec(codec_src, num_codebooks=ck.lm.config.n_q), src)
    try:
        check_rescorer(magnet_lm.config, ck.lm.config)
    except ValueError as e:
        raise ValueError(f"rescorer {src!r}: {e}") from None
    return Companion(ck.lm, MusicGenGenerationConfig(), name=src)
