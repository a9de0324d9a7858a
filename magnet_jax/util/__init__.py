"""Small generic helpers shared by several packages (NNX parameters, strict dataclass-from-dict)."""
from magnet_jax.util.config_dict import strict_from_dict
from magnet_jax.util.params import param

__all__ = ["param", "strict_from_dict"]
