"""Helpers shared by the converters: OmegaConf ``${a.b}`` references of an exported ``xp.cfg``, and
building an NNX module around converted parameters."""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

__all__ = ["InterpolationError", "module_from_pure_dict", "resolve_interpolations"]

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


def module_from_pure_dict(make: Callable[[], nnx.Module], params: Mapping[str, Any], *, error=ValueError,
                          what: str = "checkpoint") -> nnx.Module:
    """The module ``make()`` builds, holding ``params`` (a ``'.'``-flat or nested dict of arrays), without
    running its random init. Names and shapes must match exactly; values take the module's dtypes."""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    want = traverse_util.flatten_dict(nnx.to_pure_dict(state), sep=".")
    flat = {k: v for k, v in traverse_util.flatten_dict(dict(params), sep=".").items()}
    missing, extra = sorted(set(want) - set(flat)), sorted(set(flat) - set(want))
    if missing or extra:
        raise error(f"{what}: parameter names do not match the model: missing {missing[:5]}, extra {extra[:5]}")
    arrays = {}
    for key, leaf in want.items():
        value = np.asarray(flat[key])
        if value.shape != tuple(leaf.shape):
            raise error(f"{what}: parameter {key!r} has shape {value.shape}, the model (from its config) "
                        f"{tuple(leaf.shape)}")
        arrays[key] = jnp.asarray(value, dtype=leaf.dtype)
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(arrays, sep="."))
    return nnx.merge(graphdef, state)
