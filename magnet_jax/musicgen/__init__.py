"""MusicGen: delay pattern, decoding as one jitted program, training objective, pipeline."""
from magnet_jax.musicgen.config import MusicGenGenerationConfig
from magnet_jax.musicgen.generate import generate

__all__ = ["MusicGenGenerationConfig", "generate"]
