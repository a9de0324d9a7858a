"""MusicGen configs for ``tools/train.py`` (fine-tuning / training with ``objective = "musicgen"``):
``--config=configs/musicgen.py:NAME``.

NAME: ``musicgen_small``, ``musicgen_medium``, ``musicgen_large`` (the released text-to-music shapes, 30 s
windows, 4 x 2048 codes; ``--config.init_from=facebook/musicgen-small`` fine-tunes the release) or ``tiny``
(the test model; the default). Everything but the model section and the objective is the MAGNeT config of the
same kind (magnet_jax/configs.py); the model section is :class:`~magnet_jax.model.MusicGenConfig`'s fields.
"""
from magnet_jax.configs import get_config as _get

_SIZES = {"musicgen_small": dict(dim=1024, num_heads=16, num_layers=24),
          "musicgen_medium": dict(dim=1536, num_heads=24, num_layers=48),
          "musicgen_large": dict(dim=2048, num_heads=32, num_layers=48)}


def get_config(arg: str = "tiny"):
    import ml_collections

    from magnet_jax.decoding.config import MusicGenGenerationConfig
    from magnet_jax.model import MusicGenConfig
    name = arg or "tiny"
    if name not in _SIZES and name != "tiny":
        raise ValueError(f"unknown MusicGen config {name!r}; known: {sorted(_SIZES) + ['tiny']}")
    c = _get("tiny" if name == "tiny" else "magnet_small_10secs")
    shared = {k: v for k, v in c.model.to_dict().items() if k in MusicGenConfig.__dataclass_fields__}
    model = dict(MusicGenConfig().to_dict(), **shared)
    model["delays"] = tuple(range(int(model["n_q"])))
    if name == "tiny":
        model["segment_duration"] = float(c.model.segment_duration)
    else:
        model.update(_SIZES[name], segment_duration=30.0)
        c.checkpoint = "facebook/" + name.replace("_", "-")
    c.model = ml_collections.ConfigDict(model)
    c.generation = ml_collections.ConfigDict(MusicGenGenerationConfig().to_dict())
    c.objective = "musicgen"
    c.name = name
    return c
