"""MAGNeT configs, one file with an argument (big_vision style): ``--config=configs/magnet.py:NAME``.

NAME: ``magnet_small_10secs``, ``magnet_medium_10secs``, ``magnet_small_30secs``, ``magnet_medium_30secs``,
``audio_magnet_small``, ``audio_magnet_medium`` (the released models) or ``tiny`` / ``tiny_audio`` (test
models; the default) or ``bundled`` (the bundled offline model); ``hybrid_NAME`` (``hybrid_tiny``,
``hybrid_bundled``, ...) trains NAME as a Hybrid-MAGNeT (AR prefix + non-autoregressive rest).
Override any field on the command line, e.g.
``--config=configs/magnet.py:magnet_small_10secs --config.model.dtype=bfloat16 --config.generation.temp=2.5``.
The architectures live in magnet_jax/presets.py, the training defaults in magnet_jax/configs.py.
"""
from magnet_jax.configs import get_config as _get


def get_config(arg: str = "tiny"):
    return _get(arg or "tiny")
