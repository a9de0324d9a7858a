"""Deprecated alias of :mod:`magnet_jax.objectives.magnet` (kept for one release)."""
from magnet_jax.util.deprecation import moved_module

__getattr__ = moved_module("magnet_jax.masking", "magnet_jax.objectives.magnet")
