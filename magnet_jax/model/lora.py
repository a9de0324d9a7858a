"""LoRA adapters on the transformer's attention and feed-forward projections (Hu et al. 2021; PEFT semantics).

A target projection ``W`` (one per layer, stacked along the layers axis like every layer parameter) gets a
low-rank update ``W_eff = W + (alpha / rank) a @ b`` with ``a [in, rank]`` (``U(+-1/sqrt(in))``, PEFT's
kaiming-uniform) and ``b [rank, out]`` (zeros: at init the adapted model is the base model exactly). The packed
projections (self-attention ``qkv``, cross-attention ``kv``) take one adapter per component, as PEFT's adapters on
separate q / k / v projections.

Adapters are a pure nested dict ``{module: {name: {"a": [L, *in, r], "b": [L, r, *out]}}}`` (``module`` under
``layers``: ``self_attn``, ``cross_attn``, ``ffn``), kept apart from the base parameters:

* training (:func:`attach`): each adapter is put on its module as ``lora_<name>`` (an :class:`Adapter` holding
  ``nnx.LoRAParam`` variables), and the layers add ``scale (x @ a) @ b`` to the projection's output
  (:func:`magnet_jax.model.layers.plus_lora`). Differentiating w.r.t. the adapters alone never forms a gradient of
  the size of ``W``: the backward is the activations' plus rank-``r`` products.
* export / load (:func:`merge`, :func:`merge_into`): ``W + scale a @ b`` once; the merged model runs at the base
  model's cost, decoding included (an attached adapter is for training; decoding ignores it in its precomputed
  cross-attention keys / values).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

DEFAULT_ALPHA = 16.0


@dataclasses.dataclass(frozen=True)
class Target:
    module: str                 # the layer's sub-module (under ``layers``)
    name: str                   # the adapter's name there (attribute ``lora_<name>``)
    kernel: str                 # the adapted parameter of that module
    n_in: int                   # its input dims (after the layers axis)
    component: int | None = None  # index in the packed axis (right after the input dims), None: not packed

    @property
    def key(self) -> str:
        return f"{self.module}.{self.name}"


TARGETS: dict[str, Target] = {t.key: t for t in (
    Target("self_attn", "q", "qkv", 1, 0), Target("self_attn", "k", "qkv", 1, 1), Target("self_attn", "v", "qkv", 1, 2),
    Target("self_attn", "out", "out", 2),
    Target("cross_attn", "q", "q", 1), Target("cross_attn", "k", "kv", 1, 0), Target("cross_attn", "v", "kv", 1, 1),
    Target("cross_attn", "out", "out", 2),
    Target("ffn", "w1", "w1", 1), Target("ffn", "w2", "w2", 1),
)}
DEFAULT_TARGETS = tuple(TARGETS)          # attention q / k / v / out (self and cross) + FFN in / out


def parse_targets(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    return tuple(str(v) for v in value)


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int
    alpha: float = DEFAULT_ALPHA
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self):
        object.__setattr__(self, "targets", parse_targets(self.targets))
        if int(self.rank) != self.rank or self.rank < 1:
            raise ValueError(f"LoRA rank={self.rank} must be a positive integer")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"LoRA alpha={self.alpha} must be a positive number")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"LoRA targets {list(self.targets)}: give distinct names among {', '.join(TARGETS)}"
                             + (f" (unknown: {unknown})" if unknown else ""))

    @property
    def scale(self) -> float:
        return float(self.alpha) / int(self.rank)

    def to_dict(self) -> dict[str, Any]:
        return {"rank": int(self.rank), "alpha": float(self.alpha), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LoRAConfig":
        return cls(rank=int(d["rank"]), alpha=float(d["alpha"]), targets=tuple(d["targets"]))


# ----------------------------------------------------------------------------- shapes and init
def _kernel(params: Mapping, t: Target):
    return params["layers"][t.module][t.kernel]


def _split_shape(shape: Sequence[int], t: Target) -> tuple[int, tuple, tuple]:
    """``(layers, in dims, out dims)`` of target ``t`` of a kernel of ``shape`` (the packed axis dropped)."""
    L, rest = shape[0], tuple(shape[1:])
    ins, outs = rest[:t.n_in], rest[t.n_in:]
    if t.component is not None:
        outs = outs[1:]
    return L, ins, outs


def adapter_shapes(params: Mapping, config: LoRAConfig) -> dict:
    """``{module: {name: {"a": shape, "b": shape}}}`` of ``config``'s adapters on the (pure dict) ``params``."""
    out: dict = {}
    for key in config.targets:
        t = TARGETS[key]
        L, ins, outs = _split_shape(np.shape(_kernel(params, t)), t)
        out.setdefault(t.module, {})[t.name] = {"a": (L, *ins, config.rank), "b": (L, config.rank, *outs)}
    return out


def init_adapters(params: Mapping, config: LoRAConfig, key) -> dict:
    """Fresh adapters on ``params`` (a pure dict, or shapes): ``a ~ U(+-1/sqrt(fan_in))``, ``b = 0``."""
    out: dict = {}
    shapes = adapter_shapes(params, config)
    for i, key_name in enumerate(config.targets):
        t = TARGETS[key_name]
        sa, sb = shapes[t.module][t.name]["a"], shapes[t.module][t.name]["b"]
        bound = 1.0 / math.sqrt(int(np.prod(sa[1:-1])))
        a = jax.random.uniform(jax.random.fold_in(key, i), sa, jnp.float32, -bound, bound)
        out.setdefault(t.module, {})[t.name] = {"a": a, "b": jnp.zeros(sb, jnp.float32)}
    return out


def num_adapter_params(adapters: Mapping) -> int:
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(adapters))


def check_adapters(params: Mapping, adapters: Mapping, config: LoRAConfig) -> None:
    """ValueError (naming the first differences) unless ``adapters`` are exactly ``config``'s on ``params``."""
    want = adapter_shapes(params, config)
    have = {m: {n: {k: tuple(np.shape(v)) for k, v in ab.items()} for n, ab in names.items()}
            for m, names in adapters.items()}
    if have != want:
        flat_w = {f"{m}.{n}.{k}": s for m, ns in want.items() for n, ab in ns.items() for k, s in ab.items()}
        flat_h = {f"{m}.{n}.{k}": s for m, ns in have.items() for n, ab in ns.items() for k, s in ab.items()}
        diff = [f"{k}: adapter {flat_h.get(k)}, model needs {flat_w.get(k)}" for k in sorted(set(flat_w) | set(flat_h))
                if flat_h.get(k) != flat_w.get(k)]
        raise ValueError("the adapter does not fit this model (" + "; ".join(diff[:3]) + ")")


# ----------------------------------------------------------------------------- merge (export / load)
def delta(a, b, scale: float, dtype=jnp.float32):
    """``scale a @ b`` per layer: ``a [L, *in, r]``, ``b [L, r, *out]`` -> ``[L, *in, *out]`` (float32, exact)."""
    L, r = a.shape[0], a.shape[-1]
    d = jnp.matmul(a.reshape(L, -1, r).astype(jnp.float32), b.reshape(L, r, -1).astype(jnp.float32),
                   precision=jax.lax.Precision.HIGHEST)
    return (scale * d).reshape(a.shape[:-1] + b.shape[2:]).astype(dtype)


def _merged_kernel(w, t: Target, ab: Mapping, scale: float):
    d = delta(ab["a"], ab["b"], scale, w.dtype)
    if t.component is None:
        return w + d
    return w.at[(slice(None),) * (1 + t.n_in) + (t.component,)].add(d)


def merge(params: Mapping, adapters: Mapping, config: LoRAConfig) -> dict:
    """The base ``params`` (pure dict) with every adapter merged in: ``W + scale a @ b`` (a new dict; jittable)."""
    out = jax.tree.map(lambda x: x, dict(params))
    layers = dict(out["layers"])
    for key in config.targets:
        t = TARGETS[key]
        mod = dict(layers[t.module])
        mod[t.kernel] = _merged_kernel(mod[t.kernel], t, adapters[t.module][t.name], config.scale)
        layers[t.module] = mod
    out["layers"] = layers
    return out


def merge_into(lm: nnx.Module, adapters: Mapping, config: LoRAConfig) -> nnx.Module:
    """Merges ``adapters`` into ``lm``'s weights in place (checked first: :func:`check_adapters`); returns ``lm``."""
    params = nnx.to_pure_dict(nnx.state(lm, nnx.Param))
    check_adapters(params, adapters, config)
    for key in config.targets:
        t = TARGETS[key]
        var = getattr(getattr(lm.layers, t.module), t.kernel)
        ab = {k: jnp.asarray(v) for k, v in adapters[t.module][t.name].items()}
        var[...] = _merged_kernel(var[...], t, ab, config.scale)
    return lm


# ----------------------------------------------------------------------------- attach (training)
class Adapter(nnx.Module):
    """One stacked adapter on a layer module (``lora_<name>``): ``a [L, *in, r]``, ``b [L, r, *out]``, ``scale``."""

    def __init__(self, a, b, scale: float):
        self.a = nnx.LoRAParam(a)
        self.b = nnx.LoRAParam(b)
        self.scale = float(scale)


def attach(lm: nnx.Module, adapters: Mapping, config: LoRAConfig) -> nnx.Module:
    """Puts ``adapters`` on ``lm``'s layer modules (``lm.layers.<module>.lora_<name>``), in place; returns ``lm``.
    The layers then compute ``W x + scale (x a) b`` for each target (the same function as the merged weights)."""
    for key in config.targets:
        t = TARGETS[key]
        ab = adapters[t.module][t.name]
        setattr(getattr(lm.layers, t.module), f"lora_{t.name}", Adapter(ab["a"], ab["b"], config.scale))
    return lm
