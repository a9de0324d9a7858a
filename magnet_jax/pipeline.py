"""Deprecated alias of :mod:`magnet_jax.pipelines` (kept for one release): ``magnet_jax.pipeline.MagnetPipeline``
-> ``magnet_jax.pipelines.MagnetPipeline``."""
from magnet_jax.util.deprecation import moved_module

__getattr__ = moved_module("magnet_jax.pipeline", "magnet_jax.pipelines")
