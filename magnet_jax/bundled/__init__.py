"""The bundled offline model: its corpus (music21 scores rendered with FluidSynth) and descriptions."""
from magnet_jax.bundled.corpus import CorpusOptions, build_corpus
from magnet_jax.bundled.descriptions import FAMILIES, INSTRUMENTS, describe

__all__ = ["CorpusOptions", "build_corpus", "FAMILIES", "INSTRUMENTS", "describe"]
