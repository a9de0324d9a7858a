"""Training objectives, one per family: MAGNeT's span-masked CE (``magnet``), Hybrid-MAGNeT's (``hybrid``),
MusicGen's next-token CE over the delay pattern (``musicgen``); ``OBJECTIVES`` is the train step's table of them."""
from magnet_jax.objectives.base import Objective
from magnet_jax.objectives.hybrid import hybrid_loss
from magnet_jax.objectives.magnet import magnet_loss
from magnet_jax.objectives.musicgen import musicgen_loss
from magnet_jax.objectives.table import OBJECTIVES

__all__ = ["OBJECTIVES", "Objective", "hybrid_loss", "magnet_loss", "musicgen_loss"]
