"""Small generic helpers shared by several packages (NNX parameters, strict dataclass-from-dict).

Re-exported lazily, so that ``magnet_jax.util.cli`` / ``magnet_jax.util.allocator`` load without JAX (a tool
can re-execute itself with tcmalloc before paying for the JAX import)."""
from __future__ import annotations

import importlib

_EXPORTS = {"param": "magnet_jax.util.params", "strict_from_dict": "magnet_jax.util.config_dict"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'magnet_jax.util' has no attribute {name!r}")
