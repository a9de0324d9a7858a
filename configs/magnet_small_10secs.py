"""magnet_small_10secs: see magnet_jax/configs.py. Override any field from the command line, e.g.
`--config=configs/magnet_small_10secs.py --config.model.dtype=bfloat16 --config.generation.temp=2.5`."""
from magnet_jax.configs import get_config as _get


def get_config():
    return _get("magnet_small_10secs")
