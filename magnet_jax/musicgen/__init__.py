"""Deprecated alias (kept for one release): MusicGen's parts live in the layers, ``magnet_jax.musicgen.generate``
-> ``magnet_jax.decoding.musicgen.generate``, ``MusicGenGenerationConfig`` -> ``magnet_jax.decoding.config``,
``musicgen_loss`` -> ``magnet_jax.objectives.musicgen``."""
from magnet_jax.util.deprecation import moved_module

__getattr__ = moved_module("magnet_jax.musicgen", "magnet_jax.decoding.musicgen", {
    "MusicGenGenerationConfig": "magnet_jax.decoding.config.MusicGenGenerationConfig",
    "musicgen_loss": "magnet_jax.objectives.musicgen.musicgen_loss",
    "MusicGenPipeline": "magnet_jax.pipelines.musicgen.MusicGenPipeline"})
