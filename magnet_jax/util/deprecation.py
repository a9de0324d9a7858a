"""Thin aliases that keep a moved public name working for one release, with a DeprecationWarning."""
from __future__ import annotations

import importlib
import warnings


def moved_module(old: str, new: str, names: dict[str, str] | None = None):
    """A module ``__getattr__`` for the alias module ``old``: attribute ``x`` -> ``new.x`` (or the dotted target
    ``names[x]``), warning once per access that ``old`` moved."""
    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        target = (names or {}).get(name, f"{new}.{name}")
        mod, _, attr = target.rpartition(".")
        warnings.warn(f"{old} is deprecated: use {target}", DeprecationWarning, stacklevel=2)
        try:
            return getattr(importlib.import_module(mod), attr)
        except AttributeError:
            raise AttributeError(f"module {old!r} has no attribute {name!r}") from None
    return __getattr__
