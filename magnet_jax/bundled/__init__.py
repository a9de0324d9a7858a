"""The bundled offline model: its corpus (music21 scores rendered with FluidSynth) and descriptions."""
from magnet_jax.bundled.build import assemble
from magnet_jax.bundled.corpus import CorpusOptions, build_corpus
from magnet_jax.bundled.descriptions import FAMILIES, INSTRUMENTS, describe
from magnet_jax.bundled.package import BundledMissingError, is_bundled_layout
from magnet_jax.bundled.text import build_text_encoder

__all__ = ["CorpusOptions", "build_corpus", "FAMILIES", "INSTRUMENTS", "describe", "BundledMissingError", "assemble",
           "is_bundled_layout", "build_text_encoder"]
