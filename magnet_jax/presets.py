"""The named architectures: the six released MAGNeT models, the tiny test models and the bundled offline model,
each with its generation, codec and text defaults (:class:`Preset`); ``hybrid_NAME`` is NAME as a Hybrid-MAGNeT.

Random-init generation reads this table (``MagnetPipeline.from_config(NAME)``, ``--model=config:NAME``), and
:mod:`magnet_jax.configs` composes the experiment configs from it (a preset + the training defaults). It reads the
model and decoding configs, the T5 widths and the released repos' kinds (``convert.checkpoint``) only.
:data:`RELEASED` is also read for the released hub ids and kinds.
"""
from __future__ import annotations

import dataclasses

from magnet_jax.convert.checkpoint import RELEASED_KINDS
from magnet_jax.decoding.config import GenerationConfig
from magnet_jax.model.config import LMConfig, MagnetConfig, MusicGenConfig
from magnet_jax.model.families import Family, family_of
from magnet_jax.model.hybrid import HybridMagnetConfig
from magnet_jax.text.presets import WIDTHS

SMALL = dict(dim=1024, num_heads=16, num_layers=24)
MEDIUM = dict(dim=1536, num_heads=24, num_layers=48)



def _released(hub: str, size: dict, segment: int) -> dict:
    """A released checkpoint: hub id, size, window (s) and kind (the converter's table of the released repos)."""
    return dict(hub=hub, size=size, segment=segment, kind=RELEASED_KINDS[hub])


RELEASED = {
    "magnet_small_10secs": _released("facebook/magnet-small-10secs", SMALL, 10),
    "magnet_medium_10secs": _released("facebook/magnet-medium-10secs", MEDIUM, 10),
    "magnet_small_30secs": _released("facebook/magnet-small-30secs", SMALL, 30),
    "magnet_medium_30secs": _released("facebook/magnet-medium-30secs", MEDIUM, 30),
    "audio_magnet_small": _released("facebook/audio-magnet-small", SMALL, 10),
    "audio_magnet_medium": _released("facebook/audio-magnet-medium", MEDIUM, 10),
}
# Per kind: the codec and T5 of the reference recipe (audiocraft magnet_32khz / audio_magnet_16khz); the T5's
# width is text/presets.WIDTHS.
KINDS = {
    "music": dict(codec="facebook/encodec_32khz", sample_rate=32000, t5="t5-base"),
    "audio": dict(codec="", sample_rate=16000, t5="t5-large"),
}
TINY = {"tiny": "music", "tiny_audio": "audio"}
BUNDLED = "bundled"
# The bundled model's decoding knobs over the music defaults (GenerationConfig fields): chosen by measurement on
# held-out descriptions (docs/BUNDLED.md "Decoding"); its folder records them too (bundled.json "generation").
BUNDLED_GENERATION = {"max_cfg_coef": 3.0, "span_arrangement": "stride1"}
HYBRID_PREFIX = "hybrid_"     # hybrid_NAME: the Hybrid-MAGNeT variant of preset NAME (hybrid_tiny, hybrid_bundled)


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    kind: str                      # "music" | "audio": the generation defaults, codec and T5 (KINDS)
    model: LMConfig                # MagnetConfig, or HybridMagnetConfig for hybrid_NAME
    generation: GenerationConfig
    t5: str                        # text/presets name ("t5-base", "tiny"); "" = the bundled T5 (a folder)
    codec: str                     # codec hub id or folder ("" = given with the data / on the command line)
    sample_rate: int               # the codec's
    channels: int = 1
    checkpoint: str = ""           # the released checkpoint's hub id

    @property
    def family(self) -> Family:
        return family_of(self.model)


def names() -> list[str]:
    """Every preset name (each also exists as ``hybrid_NAME``)."""
    return sorted(RELEASED) + sorted(TINY) + [BUNDLED]


def get(name: str) -> Preset:
    """The preset ``name``: a released model, ``tiny`` / ``tiny_audio``, ``bundled``, or ``hybrid_NAME``."""
    if name.startswith(HYBRID_PREFIX):
        base = get(name[len(HYBRID_PREFIX):])
        # everything but the model (the delay pattern 0..K-1) is NAME's; no released MAGNeT checkpoint is a hybrid one
        return dataclasses.replace(base, name=name, model=hybrid_config(base.model), checkpoint="")
    if name in RELEASED:
        r = RELEASED[name]
        return _preset(name, r["kind"], r["segment"], r["size"], checkpoint=r["hub"])
    if name in TINY:
        # 4 codebooks x 2048 like the released tokenizers; a tiny transformer and text encoder width.
        return _preset(name, TINY[name], 2.0, dict(dim=64, num_heads=4, num_layers=2, text_dim=32), t5="tiny",
                       decoding_steps=(8, 4, 4, 4))
    if name == BUNDLED:
        # A small MAGNeT over the bundled codec's tokens (16 kHz, 50 Hz, 4 x 1024 codes), a 10 s window; ~5 M
        # parameters, rotary positions (audiocraft's transformer_lm.positional_embedding=rope: an LM of this size
        # reads the codes around a masked span with them, not with the sinusoid; docs/BUNDLED.md). The text encoder
        # is the bundled frozen T5 (magnet_jax/bundled/text.py, 128-dim); the codec is checked by shape (rate,
        # frame rate, codebooks).
        p = _preset(name, "music", 10.0, dict(dim=256, num_heads=4, num_layers=4, card=1024, n_q=4, frame_rate=50,
                                              text_dim=128, positional_embedding="rope"), t5="",
                    **BUNDLED_GENERATION)
        return dataclasses.replace(p, codec="", sample_rate=16000)
    raise ValueError(f"unknown config {name!r}; known: {names()} (and hybrid_NAME of each)")


def _preset(name: str, kind: str, segment: float, model: dict, *, t5: str | None = None, checkpoint: str = "",
            **generation) -> Preset:
    k = KINDS[kind]
    t5 = k["t5"] if t5 is None else t5
    width = {"text_dim": WIDTHS[t5]} if t5 in WIDTHS else {}
    mcfg = MagnetConfig(**{**width, **model, "segment_duration": float(segment)})
    return Preset(name, kind, mcfg, GenerationConfig.for_model(kind, segment, **generation), t5=t5, codec=k["codec"],
                  sample_rate=k["sample_rate"], checkpoint=checkpoint)


def _fields(cls, model: LMConfig) -> dict:
    """The fields of ``model`` that config class ``cls`` has too."""
    own = {f.name for f in dataclasses.fields(model)}
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(cls) if f.name in own}


def hybrid_config(model: LMConfig) -> HybridMagnetConfig:
    """``model``'s architecture as a Hybrid-MAGNeT (delays ``0..K-1``)."""
    return HybridMagnetConfig(**{**_fields(MagnetConfig, model), "delays": tuple(range(model.n_q))})


def musicgen_config(model: LMConfig, **kw) -> MusicGenConfig:
    """``model``'s architecture as a MusicGen (the fields they share, delays ``0..K-1``: audiocraft's default
    pattern); ``kw`` replaces fields (e.g. another size or window)."""
    return MusicGenConfig(**{**_fields(MusicGenConfig, model), "delays": tuple(range(model.n_q)), **kw})


def magnet_config(model: LMConfig) -> MagnetConfig:
    """``model``'s architecture as a MAGNeT."""
    return MagnetConfig(**_fields(MagnetConfig, model))


# ``model``'s architecture as a model of family NAME (pipelines' from_config: a MusicGen of the tiny architecture)
AS_FAMILY = {"magnet": magnet_config, "hybrid": hybrid_config, "musicgen": musicgen_config}
