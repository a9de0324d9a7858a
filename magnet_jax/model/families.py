"""The model families, one table: each family's name, its checkpoint ``lm_model`` (audiocraft's ``xp.cfg``), its
training objective name, its config class and its LM class.

This is the one place a family is chosen from a name or a config; the layers above keep their own table of what
they add per family, keyed by :attr:`Family.name` (``objectives.OBJECTIVES``, ``convert.audiocraft``'s readers,
``pipelines.load``'s pipeline classes). A new family is one row here plus its files in each layer.
"""
from __future__ import annotations

import dataclasses

from magnet_jax.model.config import LMConfig, MagnetConfig, MusicGenConfig
from magnet_jax.model.hybrid import HybridMagnetConfig, HybridMagnetLM
from magnet_jax.model.magnet import MagnetLM
from magnet_jax.model.musicgen import MusicGenLM
from magnet_jax.model.musicgen_melody import MusicGenMelodyConfig, MusicGenMelodyLM
from magnet_jax.model.transformer import TransformerLM


@dataclasses.dataclass(frozen=True)
class Family:
    name: str                      # the family's file name in every layer (model/, objectives/, decoding/, ...)
    lm_model: str                  # audiocraft xp.cfg ``lm_model`` (the checkpoint says which family it is)
    objective: str                 # TrainConfig.objective that trains it
    config_class: type[LMConfig]
    lm_class: type[TransformerLM]


FAMILIES = (
    Family("magnet", "transformer_lm_magnet", "magnet", MagnetConfig, MagnetLM),
    Family("hybrid", "hybrid_magnet", "hybrid", HybridMagnetConfig, HybridMagnetLM),
    Family("musicgen", "transformer_lm", "musicgen", MusicGenConfig, MusicGenLM),
    Family("musicgen_melody", "transformer_lm", "musicgen", MusicGenMelodyConfig, MusicGenMelodyLM),
)
BY_NAME = {f.name: f for f in FAMILIES}
OBJECTIVES = tuple(dict.fromkeys(f.objective for f in FAMILIES))


def family_of(config: LMConfig) -> Family:
    """The family of a model config (its exact class)."""
    for f in FAMILIES:
        if type(config) is f.config_class:
            return f
    raise TypeError(f"no model family for a {type(config).__name__}; known: "
                    f"{', '.join(f.config_class.__name__ for f in FAMILIES)}")


def family_for_objective(objective: str) -> Family:
    """The family a training objective trains (``magnet`` / ``hybrid`` / ``musicgen``)."""
    for f in FAMILIES:
        if f.objective == objective:
            return f
    raise ValueError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")


def lm_class(config: LMConfig) -> type[TransformerLM]:
    """The LM class of a model config."""
    return family_of(config).lm_class
