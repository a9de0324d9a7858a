"""Text -> audio pipelines, one per family (MAGNeT, MusicGen, Hybrid-MAGNeT) on a shared base, the companion
MusicGen of a MAGNeT pipeline (rescoring, hybrid prefixes), and the loaders that pick the family's pipeline
(:mod:`magnet_jax.pipelines.load`; importing it gives the classes their ``from_pretrained`` / ``from_config`` /
``load``)."""
from magnet_jax.pipelines.base import TextToAudioPipeline
from magnet_jax.pipelines.hybrid import HybridMagnetPipeline
from magnet_jax.pipelines.load import from_config, from_pretrained, load
from magnet_jax.pipelines.magnet import MagnetPipeline
from magnet_jax.pipelines.musicgen import MusicGenPipeline

__all__ = ["HybridMagnetPipeline", "MagnetPipeline", "MusicGenPipeline", "TextToAudioPipeline", "from_config",
           "from_pretrained", "load"]
