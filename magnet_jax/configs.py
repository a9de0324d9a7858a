"""Experiment configs (ml_collections): the six released MAGNeT models and the tiny test models.

``configs/magnet.py:NAME`` hands ``NAME`` to :func:`get_config` (big_vision style), so a CLI loads and
overrides one config file: ``--config=configs/magnet.py:magnet_small_10secs --config.model.dtype=bfloat16``.
Each default is defined once: the ``model`` section is :class:`~magnet_jax.model.MagnetConfig`'s
defaults plus the size table below, ``generation`` comes from :class:`~magnet_jax.decoding.GenerationConfig`,
the music-vs-audio choice from :data:`RELEASED`, the training fields from
:class:`~magnet_jax.training.config.TrainConfig` (read back typed, at the CLI edge, by ``TrainConfig.from_config``).
"""
from __future__ import annotations

import ml_collections

_SMALL = dict(dim=1024, num_heads=16, num_layers=24)
_MEDIUM = dict(dim=1536, num_heads=24, num_layers=48)

# The released checkpoints: hub id, size, window (s) and kind. Other code reads this table.
RELEASED = {
    "magnet_small_10secs": dict(hub="facebook/magnet-small-10secs", size=_SMALL, segment=10, kind="music"),
    "magnet_medium_10secs": dict(hub="facebook/magnet-medium-10secs", size=_MEDIUM, segment=10, kind="music"),
    "magnet_small_30secs": dict(hub="facebook/magnet-small-30secs", size=_SMALL, segment=30, kind="music"),
    "magnet_medium_30secs": dict(hub="facebook/magnet-medium-30secs", size=_MEDIUM, segment=30, kind="music"),
    "audio_magnet_small": dict(hub="facebook/audio-magnet-small", size=_SMALL, segment=10, kind="audio"),
    "audio_magnet_medium": dict(hub="facebook/audio-magnet-medium", size=_MEDIUM, segment=10, kind="audio"),
}
# Per kind: the codec of the reference recipe (audiocraft magnet_32khz / audio_magnet_16khz); the T5 name is
# TrainConfig's text default for the kind, its width text/presets.WIDTHS.
KINDS = {
    "music": dict(codec="facebook/encodec_32khz", sample_rate=32000),
    "audio": dict(codec="", sample_rate=16000),
}
TINY = {"tiny": "music", "tiny_audio": "audio"}
HYBRID_PREFIX = "hybrid_"     # hybrid_NAME: the Hybrid-MAGNeT variant of config NAME (hybrid_tiny, hybrid_bundled)


def _generation(kind: str, segment: float) -> dict:
    from magnet_jax.decoding import GenerationConfig
    d = GenerationConfig.for_model(kind, segment).to_dict()
    d["decoding_steps"] = tuple(d["decoding_steps"])
    return d


def _base(kind: str, segment: float, size: dict) -> ml_collections.ConfigDict:
    from magnet_jax.model import MagnetConfig
    from magnet_jax.text.presets import WIDTHS
    from magnet_jax.training.config import TrainConfig
    k, train = KINDS[kind], TrainConfig.defaults(kind)
    c = ml_collections.ConfigDict()
    c.name = ""
    c.checkpoint = ""                         # hub repo id or local folder of the released LM
    c.model = ml_collections.ConfigDict(dict(MagnetConfig().to_dict(), **size, text_dim=WIDTHS[train["text"]["name"]],
                                             segment_duration=float(segment)))
    c.generation = ml_collections.ConfigDict(_generation(kind, segment))
    c.codec = ml_collections.ConfigDict(dict(name=k["codec"], sample_rate=k["sample_rate"], channels=1))
    # training fields: top level for the flat fields, sections text / mesh / distributed (TrainConfig)
    c.update(train)
    return c


def get_config(name: str = "tiny") -> ml_collections.ConfigDict:
    """The config of a released model (``magnet_small_10secs``, ...) or a test model (``tiny``, ``tiny_audio``);
    ``hybrid_NAME`` is the Hybrid-MAGNeT variant of any of them (and of ``bundled``), see :func:`hybrid_variant`."""
    if name.startswith(HYBRID_PREFIX):
        return hybrid_variant(name)
    if name in RELEASED:
        r = RELEASED[name]
        c = _base(r["kind"], r["segment"], r["size"])
        c.checkpoint = r["hub"]
    elif name in TINY:
        # 4 codebooks x 2048 like the released tokenizers; a tiny transformer and text encoder width.
        c = _base(TINY[name], 2.0, dict(dim=64, num_heads=4, num_layers=2))
        c.model.text_dim = 32
        c.generation.decoding_steps = (8, 4, 4, 4)
        c.text.update(name="tiny", max_length=16)   # packaged tokenizer + random-init T5 (text/presets)
        c.update(total_steps=200, batch_size=8, learning_rate=3e-3, warmup_steps=20, log_every=1,
                 eval_every=50, eval_batches=2, checkpoint_every=50)
    else:
        raise ValueError(f"unknown config {name!r}; known: {sorted(RELEASED) + sorted(TINY)}")
    c.name = name
    return c


def hybrid_variant(name: str) -> ml_collections.ConfigDict:
    """``hybrid_NAME``: config NAME trained with the Hybrid-MAGNeT objective (``objective = "hybrid"``; the model
    gets the delay pattern ``0..K-1``). Everything else, including the window, is NAME's."""
    base = name[len(HYBRID_PREFIX):]
    if base == "bundled":
        from magnet_jax.bundled.config import lm_config  # function-level: bundled.config imports this module
        c = lm_config()
    else:
        c = get_config(base)
    c.objective = "hybrid"
    c.model.delays = tuple(range(int(c.model.n_q)))
    c.checkpoint = ""                         # no released MAGNeT checkpoint is a hybrid one
    c.name = name
    return c


def model_config(c: ml_collections.ConfigDict):
    """The model config of a config's ``model`` section: :class:`MagnetConfig`, or ``HybridMagnetConfig`` for
    ``objective = "hybrid"``."""
    from magnet_jax.training.config import model_config_class
    return model_config_class(c.get("objective", "magnet")).from_dict(c.model.to_dict())
