"""MusicGen: delay pattern, decoding as one jitted program, training objective, pipeline."""
from magnet_jax.musicgen.config import MusicGenGenerationConfig
from magnet_jax.musicgen.generate import generate
from magnet_jax.musicgen.objective import musicgen_loss

__all__ = ["MusicGenGenerationConfig", "generate", "musicgen_loss"]
