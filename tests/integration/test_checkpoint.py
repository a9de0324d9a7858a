"""The orbax checkpointer: round trip, integrity manifest, fallback past damaged steps, no non-finite saves."""
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from magnet_jax import sharding
from magnet_jax.training import state as S
from magnet_jax.training.checkpoint import Checkpointer, CheckpointError

TX = optax.adamw(1e-3)


def _setup():
    mesh = sharding.make_mesh(data=-1)
    params = {"w": jnp.arange(4096.0).reshape(64, 64) / 4096, "b": jnp.ones((64,))}
    specs = S.state_specs(TX, params, {"w": P(), "b": P()})
    return mesh, params, specs


def _state(params, specs, mesh, step, scale=1.0):
    st = S.init_state(TX, jax.tree.map(lambda x: x * scale, params), specs, mesh)
    return st.replace(step=jnp.asarray(step, jnp.int32))


def _saved(tmp_path, steps=(1, 2, 3)):
    mesh, params, specs = _setup()
    ck = Checkpointer(tmp_path / "checkpoints", keep=5)
    for s in steps:
        ck.save(s, _state(params, specs, mesh, s, scale=float(s)), force=True)
    ck.close()
    return mesh, params, specs


def _restore(tmp_path, mesh, params, specs):
    ck = Checkpointer(tmp_path / "checkpoints", keep=5)
    try:
        return ck.restore(S.abstract_state(TX, params, specs, mesh))
    finally:
        ck.close()


def _biggest_file(step_dir):
    return max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_round_trip_and_manifest(tmp_path):
    mesh, params, specs = _saved(tmp_path)
    manifest = json.loads((tmp_path / "checkpoints" / "integrity" / "3.json").read_text())
    assert manifest and all(len(v) == 2 and len(v[1]) == 64 for v in manifest.values())
    st = _restore(tmp_path, mesh, params, specs)
    assert int(st.step) == 3
    np.testing.assert_array_equal(np.asarray(st.params["w"]), 3 * np.asarray(params["w"]))
    assert float(st.ema_count) == 0.0 and int(st.consecutive_skips) == 0


def _flip(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "zero", "truncate", "delete"])
def test_damaged_latest_falls_back_to_newest_intact(tmp_path, caplog, damage):
    mesh, params, specs = _saved(tmp_path)
    victim = _biggest_file(tmp_path / "checkpoints" / "3" / "state")
    if damage == "flip":
        _flip(victim)
    elif damage == "zero":
        victim.write_bytes(b"")
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:
        victim.unlink()
    with caplog.at_level(logging.WARNING, logger="magnet_jax.train"):
        st = _restore(tmp_path, mesh, params, specs)
    assert int(st.step) == 2
    np.testing.assert_array_equal(np.asarray(st.params["w"]), 2 * np.asarray(params["w"]))
    assert "step 3" in caplog.text and "newest intact" in caplog.text
    assert not (tmp_path / "checkpoints" / "3").exists()                   # set aside, so step 3 can be saved
    assert list((tmp_path / "checkpoints_damaged").glob("3-*"))
    ck = Checkpointer(tmp_path / "checkpoints", keep=5)
    assert ck.latest_step() == 2
    ck.save(3, _state(params, specs, mesh, 3), force=True)
    ck.close()


def test_step_without_manifest_is_trusted_to_orbax(tmp_path):
    """Killed between orbax's commit and the manifest write: the step is complete and is used."""
    mesh, params, specs = _saved(tmp_path)
    (tmp_path / "checkpoints" / "integrity" / "3.json").unlink()
    assert int(_restore(tmp_path, mesh, params, specs).step) == 3


def test_every_step_damaged_is_a_clear_error(tmp_path):
    mesh, params, specs = _saved(tmp_path, steps=(1, 2))
    for s in (1, 2):
        _biggest_file(tmp_path / "checkpoints" / str(s) / "state").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint .*step 2: .*step 1: .*move the folder away"):
        _restore(tmp_path, mesh, params, specs)


def test_non_finite_state_is_never_saved(tmp_path):
    mesh, params, specs = _setup()
    ck = Checkpointer(tmp_path / "checkpoints", keep=5)
    ck.save(1, _state(params, specs, mesh, 1), force=True)
    bad = _state(params, specs, mesh, 2)
    bad = bad.replace(params={"w": bad.params["w"].at[0, 0].set(jnp.nan), "b": bad.params["b"]})
    with pytest.raises(FloatingPointError, match="not finite"):
        ck.save(2, bad, force=True)
    ck.close()
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [1]


def test_another_config_is_a_config_mismatch_not_damage(tmp_path):
    """Issue 32: intact checkpoints of a model of another width are a config change (the error names the array
    and, through the recorded config, the fields), never 'damaged', and nothing is moved away."""
    from magnet_jax.training.checkpoint import ConfigMismatchError
    from magnet_jax.training.run_config import explain_mismatch
    mesh, params, specs = _saved(tmp_path, steps=(1, 2))
    wider = {"w": jnp.zeros((64, 32)), "b": jnp.ones((64,))}
    with pytest.raises(ConfigMismatchError) as e:
        _restore(tmp_path, mesh, wider, S.state_specs(TX, wider, {"w": P(), "b": P()}))
    assert "damaged" not in str(e.value) and "w is (64, 64) in the checkpoint, (64, 32)" in str(e.value)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2", "integrity"]
    assert not (tmp_path / "checkpoints_damaged").exists()
    msg = explain_mismatch(e.value, {"model": {"dim": 64}, "lr": 1}, {"model": {"dim": 32}, "lr": 2}, "--config")
    assert "model.dim: 64 -> 32" in msg and "move" not in msg
    assert int(_restore(tmp_path, mesh, params, specs).step) == 2
