"""Train state (params, optimizer state, EMA, counters) as plain pytrees, and its shardings.

Parameters are kept as the pure nested dict of an NNX state (``nnx.to_pure_dict``); the model is
rebuilt inside jit with ``nnx.merge(graphdef, params)``. Every leaf's sharding comes from the
logical axis names of its variable and :data:`magnet_jax.sharding.LOGICAL_AXIS_RULES`; the
optimizer's moments follow their parameters (``optax.tree_map_params``).
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from magnet_jax import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: number of updates applied (or skipped)
    params: Any              # nested dict of float32 arrays
    opt_state: Any
    ema: Any                 # EMA of params (decay every ``ema_every`` steps), saved alongside
    skipped: jax.Array       # int32 scalar: updates skipped by the non-finite guard

    def to_dict(self) -> dict:
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "ema": self.ema,
                "skipped": self.skipped}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        return cls(**d)


def split_model(model: nnx.Module):
    """(graphdef, params pure dict, partition-spec dict of the same structure)."""
    graphdef, state = nnx.split(model)
    return graphdef, nnx.to_pure_dict(state), _pure_specs(sharding.state_partition_specs(state))


def _pure_specs(specs) -> dict:
    """A PartitionSpec tree keyed like ``nnx.to_pure_dict`` of the same state."""
    out: dict = {}
    for path, spec in jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda x: isinstance(x, P))[0]:
        node = out
        keys = [getattr(k, "key", getattr(k, "name", k)) for k in path]
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = spec
    return out


def state_specs(tx: optax.GradientTransformation, params, param_specs) -> TrainState:
    """PartitionSpec tree of the whole TrainState."""
    abstract_opt = jax.eval_shape(tx.init, params)
    opt_specs = optax.tree_map_params(tx, lambda _, s: s, abstract_opt, param_specs,
                                      transform_non_params=lambda _: P(), is_leaf=lambda x: isinstance(x, P))
    return TrainState(step=P(), params=param_specs, opt_state=opt_specs, ema=param_specs, skipped=P())


def to_shardings(specs, mesh):
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def init_state(tx, params, specs: TrainState, mesh) -> TrainState:
    """A fresh TrainState placed on ``mesh`` (optimizer state created sharded, inside jit)."""
    shardings = to_shardings(specs, mesh)
    params = jax.device_put(params, shardings.params)

    @jax.jit
    def make(params):
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          ema=jax.tree.map(jnp.copy, params), skipped=jnp.zeros((), jnp.int32))
    return jax.jit(make, out_shardings=shardings)(params)


def abstract_state(tx, params, specs: TrainState, mesh) -> TrainState:
    """ShapeDtypeStructs with shardings on ``mesh``: the restore target for orbax."""
    shapes = jax.eval_shape(lambda p: TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p),
                                                 ema=p, skipped=jnp.zeros((), jnp.int32)), params)
    shardings = to_shardings(specs, mesh)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
