"""Helpers shared by the converters: OmegaConf ``${a.b}`` references of an exported ``xp.cfg``."""
from __future__ import annotations

import re
from typing import Any

__all__ = ["InterpolationError", "resolve_interpolations"]

_REF = re.compile(r"\$\{([\w.]+)\}")


class InterpolationError(ValueError):
    """An ``xp.cfg`` value ``${a.b}`` names a key the config does not have."""


def resolve_interpolations(node: Any, root: Any, _depth: int = 0) -> Any:
    """``node`` with every whole-value reference ``${a.b.c}`` replaced by ``root['a']['b']['c']``.

    audiocraft exports ``xp.cfg`` unresolved (``OmegaConf.to_yaml``). Only absolute references that
    make up a whole value are resolved (the plain-YAML subset the released configs use); resolvers
    such as ``${oc.env:X}`` are left as text. A reference to a missing key raises
    :class:`InterpolationError`, so pass only the sections you read.
    """
    if _depth > 32:
        raise InterpolationError("xp.cfg: interpolation cycle")
    if isinstance(node, dict):
        return {k: resolve_interpolations(v, root, _depth) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_interpolations(v, root, _depth) for v in node]
    if isinstance(node, str):
        m = _REF.fullmatch(node.strip())
        if m:
            cur = root
            for part in m.group(1).split("."):
                if not isinstance(cur, dict) or part not in cur:
                    raise InterpolationError(f"xp.cfg: cannot resolve {node!r} (no key {m.group(1)!r})")
                cur = cur[part]
            return resolve_interpolations(cur, root, _depth + 1)
    return node
