"""Training at scale: typed config, optimizer / schedules, sharded train state and step, orbax
checkpoints, the loop."""
from magnet_jax.training.config import ConfigError, TrainConfig
from magnet_jax.training.loop import train
from magnet_jax.training.optim import make_optimizer, make_schedule
from magnet_jax.training.state import TrainState

__all__ = ["ConfigError", "TrainConfig", "make_optimizer", "make_schedule", "TrainState", "train"]
