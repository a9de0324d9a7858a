"""Text -> audio pipelines, one per family (MAGNeT, MusicGen, Hybrid-MAGNeT) and the companion MusicGen of a
MAGNeT pipeline (rescoring, hybrid prefixes)."""
from magnet_jax.pipelines.hybrid import HybridMagnetPipeline
from magnet_jax.pipelines.magnet import MagnetPipeline
from magnet_jax.pipelines.musicgen import MusicGenPipeline

__all__ = ["HybridMagnetPipeline", "MagnetPipeline", "MusicGenPipeline"]
