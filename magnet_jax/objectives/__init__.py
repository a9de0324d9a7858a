"""Training objectives, one per family: MAGNeT's span-masked CE (``magnet``), Hybrid-MAGNeT's (``hybrid``),
MusicGen's next-token CE over the delay pattern (``musicgen``)."""
from magnet_jax.objectives.hybrid import hybrid_loss
from magnet_jax.objectives.magnet import magnet_loss
from magnet_jax.objectives.musicgen import musicgen_loss

__all__ = ["hybrid_loss", "magnet_loss", "musicgen_loss"]
