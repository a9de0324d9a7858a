"""``strict_from_dict``: a frozen dataclass from a mapping, refusing unknown keys by name."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping


def strict_from_dict(cls, d: Mapping[str, Any]):
    """``cls(**d)`` for a dataclass, refusing unknown keys by name (a typo in a config must not pass)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown} (known: {sorted(names)})")
    return cls(**dict(d))
