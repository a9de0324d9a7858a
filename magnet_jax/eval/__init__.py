"""Evaluation of the bundled model: Fréchet audio distance, text adherence (MIR vs the prompt), codec
reconstruction; :mod:`magnet_jax.eval.report` runs them over a held-out manifest (``tools/evaluate.py``)."""
from magnet_jax.eval.adherence import FamilyClassifier, measure, score
from magnet_jax.eval.fad import (
                                 CodecEmbedding,
                                 Embedding,
                                 FunctionEmbedding,
                                 MelEmbedding,
                                 clap_embedding,
                                 frechet_audio_distance,
                                 frechet_distance,
)
from magnet_jax.eval.mir import estimate_key, estimate_tempo, mfcc_stats
from magnet_jax.eval.recon import chroma_similarity, mel_distance, reconstruction_metrics, si_snr

__all__ = ["FamilyClassifier", "measure", "score", "CodecEmbedding", "Embedding", "FunctionEmbedding",
           "MelEmbedding", "clap_embedding", "frechet_audio_distance", "frechet_distance", "estimate_key",
           "estimate_tempo", "mfcc_stats", "chroma_similarity", "mel_distance", "reconstruction_metrics", "si_snr"]
