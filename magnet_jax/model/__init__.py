"""The MAGNeT LM (Flax NNX): config, restricted-context masks, layers."""
from magnet_jax.model.config import MagnetConfig
from magnet_jax.model.magnet import MagnetLM, num_params

__all__ = ["MagnetConfig", "MagnetLM", "num_params"]
