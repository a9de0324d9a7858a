"""The LMs (Flax NNX): one shared transformer; MAGNeT (masked, restricted context) and MusicGen (causal, delays)."""
from magnet_jax.model.config import LMConfig, MagnetConfig, MusicGenConfig
from magnet_jax.model.magnet import MagnetLM
from magnet_jax.model.musicgen import MusicGenLM
from magnet_jax.model.transformer import TransformerLM, num_params

__all__ = ["LMConfig", "MagnetConfig", "MagnetLM", "MusicGenConfig", "MusicGenLM", "TransformerLM", "num_params"]
