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
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from magnet_jax import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: number of updates applied (or skipped)
    params: Any              # nested dict of float32 arrays
    opt_state: Any
    ema: Any                 # bias-corrected EMA of params (every ``ema_every`` steps), saved alongside
    ema_count: jax.Array     # float32 scalar: audiocraft's unbiased-EMA count (sum of decay^i)
    skipped: jax.Array       # int32 scalar: updates skipped by the non-finite guard
    consecutive_skips: jax.Array  # int32 scalar: skipped updates since the last applied one

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        return cls(**d)


def fresh(params, opt_state) -> TrainState:
    """Step 0: EMA = params (weight 0 once the first EMA update runs), counters at zero."""
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, opt_state=opt_state, ema=jax.tree.map(jnp.copy, params),
                      ema_count=jnp.zeros((), jnp.float32), skipped=zero, consecutive_skips=zero)


def split_model(model: nnx.Module):
    """(graphdef, params pure dict, partition-spec dict of the same structure)."""
    graphdef, state = nnx.split(model)
    return graphdef, nnx.to_pure_dict(state), nnx.to_pure_dict(sharding.state_partition_specs(state))


def state_specs(tx: optax.GradientTransformation, params, param_specs) -> TrainState:
    """PartitionSpec tree of the whole TrainState."""
    abstract_opt = jax.eval_shape(tx.init, params)
    opt_specs = optax.tree_map_params(tx, lambda _, s: s, abstract_opt, param_specs,
                                      transform_non_params=lambda _: P(), is_leaf=lambda x: isinstance(x, P))
    return TrainState(step=P(), params=param_specs, opt_state=opt_specs, ema=param_specs, ema_count=P(),
                      skipped=P(), consecutive_skips=P())


def to_shardings(specs, mesh):
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def init_state(tx, params, specs: TrainState, mesh) -> TrainState:
    """A fresh TrainState placed on ``mesh`` (optimizer state created sharded, inside jit)."""
    shardings = to_shardings(specs, mesh)
    params = jax.device_put(params, shardings.params)
    return jax.jit(lambda p: fresh(p, tx.init(p)), out_shardings=shardings)(params)


def abstract_state(tx, params, specs: TrainState, mesh) -> TrainState:
    """ShapeDtypeStructs with shardings on ``mesh``: the restore target for orbax."""
    shapes = jax.eval_shape(lambda p: fresh(p, tx.init(p)), params)
    shardings = to_shardings(specs, mesh)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def all_finite(tree) -> bool:
    """True when every floating leaf of ``tree`` is finite (one device reduction, one host sync)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return bool(jax.jit(lambda xs: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs])))(leaves))
