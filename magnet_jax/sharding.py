"""Mesh construction and the one logical-axis rules table of magnet-jax.

Every parameter carries logical axis names (``out_sharding`` metadata with ``eager_sharding=False``,
so models can be built anywhere, with or without a mesh). :func:`shard_model` places a model's
state on a mesh according to :data:`LOGICAL_AXIS_RULES`; activations are constrained with
:func:`constrain` (a no-op outside a rules context).

Mesh axes (MaxText style): ``data`` (pure data parallel), ``fsdp`` (data parallel + parameter /
optimizer-state sharding), ``tensor`` (heads / FFN / vocab sharding).
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import jax
import numpy as np
from flax import linen as nn
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axes. The first rule whose mesh axes are free wins (flax semantics).
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # ---- weights
    ("embed", "fsdp"),          # model dim of weights: FSDP-sharded
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("head_dim", None),
    ("qkv", None),
    ("vocab", "tensor"),
    # The input tables [K, card + 1, dim] are small (card + 1 = 2049 does not split evenly) and a
    # gather from an embed-sharded table forces XLA into a full rematerialisation: replicate them.
    ("emb_vocab", None),
    ("emb_embed", None),
    ("codebooks", None),
    ("layers", None),
    ("norm", None),
    # ---- activations (and the input batch, see BATCH_AXES)
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("text_length", None),
    ("act_embed", None),        # model dim of activations
    ("text_embed", None),
)

# Logical axes of each input-batch array (train / eval steps shard their batch by these).
BATCH_AXES = {"codes": ("batch", None, "length"), "padding_mask": ("batch", "length"),
              "text_ids": ("batch", "text_length"), "text_mask": ("batch", "text_length"),
              "text_hidden": ("batch", "text_length", None)}


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None):
    """An Auto-axis-type Mesh ``(data, fsdp, tensor)``; one size may be -1 (= all remaining devices)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got data={data} fsdp={fsdp} tensor={tensor}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices cannot be split into mesh {sizes}")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, "
                         f"have {len(devices)}")
    n_slices = len({getattr(d, "slice_index", 0) for d in devices})
    if n_slices > 1:     # multislice (jax.make_mesh refuses it): data spans the slices (DCN), fsdp / tensor inside one
        if sizes[0] % n_slices:
            raise ValueError(f"multislice: the data axis ({sizes[0]}) must be a multiple of the {n_slices} slices")
        from jax.experimental import mesh_utils
        grid = mesh_utils.create_hybrid_device_mesh((sizes[0] // n_slices, *sizes[1:]), (n_slices, 1, 1), devices)
        return jax.sharding.Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * 3)
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_to_spec(logical: Sequence[str | None] | None, rules=LOGICAL_AXIS_RULES) -> P:
    if logical is None:
        return P()
    return nn.logical_to_mesh_axes(tuple(logical), rules)


def state_partition_specs(state, rules=LOGICAL_AXIS_RULES):
    """PartitionSpec tree for an NNX state whose variables carry logical ``out_sharding`` names."""
    def spec(x):
        names = x.get_metadata().get("out_sharding") if isinstance(x, nnx.Variable) else None
        return logical_to_spec(names, rules)
    return jax.tree.map(spec, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def state_shardings(state, mesh, rules=LOGICAL_AXIS_RULES):
    specs = state_partition_specs(state, rules)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def shard_model(model: nnx.Module, mesh, rules=LOGICAL_AXIS_RULES) -> nnx.Module:
    """Places every variable of ``model`` on ``mesh`` by its logical names (in place); returns it."""
    state = nnx.state(model)
    sh = state_shardings(state, mesh, rules)
    values = jax.tree.map(lambda v: v[...] if isinstance(v, nnx.Variable) else v, state,
                          is_leaf=lambda x: isinstance(x, nnx.Variable))
    placed = jax.device_put(values, sh)
    nnx.update(model, placed)
    return model


def batch_shardings(batch_keys: Sequence[str], mesh, rules=LOGICAL_AXIS_RULES) -> dict[str, NamedSharding]:
    """``{key: NamedSharding}`` of the input-batch arrays ``batch_keys`` (names of :data:`BATCH_AXES`)."""
    return {k: NamedSharding(mesh, logical_to_spec(BATCH_AXES[k], rules)) for k in batch_keys}


def constrain(x, logical: Sequence[str | None]):
    """``with_logical_constraint`` under an active rules context; identity otherwise."""
    return nn.with_logical_constraint(x, tuple(logical))


@contextlib.contextmanager
def use_mesh(mesh, rules=LOGICAL_AXIS_RULES):
    """``jax.set_mesh(mesh)`` + the logical rules, for code that constrains activations."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield mesh
