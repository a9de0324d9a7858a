"""Training at scale: optimizer / schedules, sharded train state and step, orbax checkpoints, loop."""
from magnet_jax.training.optim import make_optimizer, make_schedule
from magnet_jax.training.state import TrainState

__all__ = ["make_optimizer", "make_schedule", "TrainState", "train"]


def train(cfg, workdir):
    """See :func:`magnet_jax.training.loop.train`."""
    from magnet_jax.training.loop import train as _train
    return _train(cfg, workdir)
