"""MusicGen configs for ``tools/train.py`` (fine-tuning / training with ``objective = "musicgen"``):
``--config=configs/musicgen.py:NAME``.

NAME: ``musicgen_small``, ``musicgen_medium``, ``musicgen_large`` (the released text-to-music shapes, 30 s
windows, 4 x 2048 codes; ``--config.init_from=facebook/musicgen-small`` fine-tunes the release) or ``tiny``
(the test model; the default). Everything but the model section and the objective is the MAGNeT config of the
same kind (magnet_jax/configs.py); the model section is the MAGNeT architecture as a
:class:`~magnet_jax.model.MusicGenConfig` (:func:`magnet_jax.presets.musicgen_config`).
"""
import ml_collections

from magnet_jax.configs import get_config as _get
from magnet_jax.configs import model_config
from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.presets import musicgen_config

_SIZES = {"musicgen_small": dict(dim=1024, num_heads=16, num_layers=24),
          "musicgen_medium": dict(dim=1536, num_heads=24, num_layers=48),
          "musicgen_large": dict(dim=2048, num_heads=32, num_layers=48)}


def get_config(arg: str = "tiny"):
    name = arg or "tiny"
    if name not in _SIZES and name != "tiny":
        raise ValueError(f"unknown MusicGen config {name!r}; known: {sorted(_SIZES) + ['tiny']}")
    c = _get("tiny" if name == "tiny" else "magnet_small_10secs")
    model = musicgen_config(model_config(c))
    if name != "tiny":
        model = model.replace(**_SIZES[name], segment_duration=30.0)
        c.checkpoint = "facebook/" + name.replace("_", "-")
    c.model = ml_collections.ConfigDict(model.to_dict())
    c.generation = ml_collections.ConfigDict(MusicGenGenerationConfig().to_dict())
    c.objective = "musicgen"
    c.name = name
    return c
