"""The logical-axis rules table and the specs / shardings derived from it (8 fake CPU devices)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from magnet_jax import sharding
from magnet_jax.model import MagnetConfig, MagnetLM
from magnet_jax.training import state as S

CFG = MagnetConfig(dim=64, num_heads=4, num_layers=2, text_dim=16, segment_duration=0.6)


def test_rules_name_each_logical_axis_once_and_only_mesh_axes():
    names = [n for n, _ in sharding.LOGICAL_AXIS_RULES]
    assert len(names) == len(set(names))
    for _, axes in sharding.LOGICAL_AXIS_RULES:
        for a in (axes if isinstance(axes, tuple) else (axes,)):
            assert a is None or a in sharding.MESH_AXES
    used = {a for axes in sharding.BATCH_AXES.values() for a in axes if a is not None}
    assert used <= set(names)                       # every batch axis has a rule


@pytest.mark.parametrize("logical,want", [
    (("embed", "mlp"), P("fsdp", "tensor")),
    (("layers", "mlp", "embed"), P(None, "tensor", "fsdp")),
    (("batch", None, "length"), P(("data", "fsdp"), None, None)),
    (("emb_vocab", "emb_embed"), P(None, None)),
    (None, P()),
])
def test_logical_to_spec(logical, want):
    assert sharding.logical_to_spec(logical) == want


def test_batch_shardings_split_the_batch_over_data_and_fsdp():
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    sh = sharding.batch_shardings(("codes", "padding_mask", "text_ids", "text_mask"), mesh)
    assert sh["codes"].spec == P(("data", "fsdp"), None, None)
    x = jax.device_put(np.zeros((8, 4, 6), np.int32), sh["codes"])
    assert {s.data.shape for s in x.addressable_shards} == {(2, 4, 6)}      # 4 batch shards, tensor-replicated
    with pytest.raises(KeyError):
        sharding.batch_shardings(("unknown",), mesh)


def test_make_mesh_sizes_and_errors():
    assert dict(sharding.make_mesh(data=-1, fsdp=2).shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    with pytest.raises(ValueError, match="at most one"):
        sharding.make_mesh(data=-1, fsdp=-1)
    with pytest.raises(ValueError, match="needs 6 devices"):
        sharding.make_mesh(data=3, fsdp=2)
    with pytest.raises(ValueError, match="cannot be split"):
        sharding.make_mesh(data=-1, fsdp=3)


def test_param_specs_follow_the_rules_and_place_the_model():
    model = MagnetLM(CFG, rngs=nnx.Rngs(0))
    _, params, specs = S.split_model(model)
    assert jax.tree.structure(params) == jax.tree.structure(specs, is_leaf=lambda x: isinstance(x, P))
    assert specs["layers"]["ffn"]["w1"] == P(None, "fsdp", "tensor")
    assert specs["layers"]["ffn"]["w2"] == P(None, "tensor", "fsdp")
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    sharding.shard_model(model, mesh)
    w1 = nnx.state(model)["layers"]["ffn"]["w1"][...]
    assert w1.sharding.spec == P(None, "fsdp", "tensor")
    assert w1.addressable_shards[0].data.shape == (CFG.num_layers, CFG.dim // 2, CFG.ffn_dim // 2)
    np.testing.assert_array_equal(np.asarray(w1), np.asarray(params["layers"]["ffn"]["w1"]))


def test_constrain_is_identity_outside_a_rules_context():
    x = jnp.arange(8.0).reshape(2, 4)
    np.testing.assert_array_equal(np.asarray(sharding.constrain(x, ("batch", "act_embed"))), np.asarray(x))
