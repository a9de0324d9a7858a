"""The sharded train step on 8 fake CPU devices vs one device; accumulation; NaN guard; EMA."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from magnet_jax import sharding
from magnet_jax.configs import get_config, model_config
from magnet_jax.model import MagnetLM
from magnet_jax.convert.t5 import load_text_stack
from magnet_jax.training import state as S
from magnet_jax.training.optim import make_optimizer, make_schedule
from magnet_jax.training.step import batch_shardings, make_train_step

KEYS = ("codes", "padding_mask", "text_ids", "text_mask")


def _cfg(**kw):
    c = get_config("tiny")
    c.model.segment_duration = 0.6                      # 30 frames
    c.update({"batch_size": 8, "warmup_steps": 2, "learning_rate": 1e-3, **kw})
    return c


def _batch(c, seed=0):
    mcfg = model_config(c)
    T, S_txt = mcfg.segment_frames, c.text.max_length
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {"codes": np.asarray(jax.random.randint(k[0], (c.batch_size, 4, T), 0, mcfg.card)),
            "padding_mask": np.arange(T)[None].repeat(c.batch_size, 0) < np.array([T] * 6 + [20, 25])[:, None],
            "text_ids": np.asarray(jax.random.randint(k[1], (c.batch_size, S_txt), 0, 100)),
            "text_mask": np.asarray((jnp.arange(S_txt)[None] < jax.random.randint(k[2], (c.batch_size, 1), 0, S_txt)))
            .astype(np.int32)}


def _put(b, mesh):
    return jax.device_put(b, batch_shardings(KEYS, mesh))


def _setup(c, mesh):
    mcfg = model_config(c)
    _, t5 = load_text_stack("tiny", mcfg.text_dim)
    t5g, t5s = nnx.split(t5.module)
    graphdef, params, pspecs = S.split_model(MagnetLM(mcfg, rngs=nnx.Rngs(0)))
    tx = make_optimizer(c)
    specs = S.state_specs(tx, params, pspecs)
    state = S.init_state(tx, params, specs, mesh)
    step = make_train_step(graphdef, t5g, c, tx, mcfg, specs, mesh, KEYS)
    t5p = jax.device_put(nnx.to_pure_dict(t5s), jax.sharding.NamedSharding(mesh, P()))
    return state, step, t5p, specs


def _run(c, mesh, batches):
    state, step, t5p, specs = _setup(c, mesh)
    losses = []
    with sharding.use_mesh(mesh):
        for b in batches:
            state, m = step(state, _put(b, mesh), t5p, jax.random.PRNGKey(7))
            losses.append(float(m["loss"]))
    return state, losses, specs


def test_sharded_step_equals_single_device():
    c = _cfg()
    batches = [_batch(c, i) for i in range(3)]
    one = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    eight = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    s1, l1, _ = _run(c, one, batches)
    s8, l8, specs = _run(c, eight, batches)
    np.testing.assert_allclose(l1, l8, rtol=2e-5)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)
    # shardings are what the rules say, for params, both Adam moments and the EMA
    w1 = s8.params["layers"]["ffn"]["w1"]
    assert w1.sharding.spec == P(None, "fsdp", "tensor")
    adam = s8.opt_state[1][0]
    assert adam.mu["layers"]["ffn"]["w1"].sharding.spec == P(None, "fsdp", "tensor")
    assert adam.nu["layers"]["self_attn"]["qkv"].sharding.spec == P(None, "fsdp", None, "tensor", None)
    assert s8.ema["heads"].sharding.spec == P(None, "fsdp", "tensor")
    assert s8.step.sharding.spec == P() and int(s8.step) == 3


def test_gradient_accumulation_equals_one_batch():
    batches = [_batch(_cfg(), i) for i in range(2)]
    mesh = sharding.make_mesh(data=-1)
    s1, l1, _ = _run(_cfg(), mesh, batches)
    s2, l2, _ = _run(_cfg(grad_accum_steps=4), mesh, batches)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_non_finite_update_is_skipped():
    c = _cfg()
    mesh = sharding.make_mesh(data=-1)
    state, step, t5p, _ = _setup(c, mesh)
    before = jax.tree.map(np.asarray, state.params)
    bad = _put(_batch(c), mesh)
    t5_nan = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), t5p)      # NaN text hidden -> NaN loss
    with sharding.use_mesh(mesh):
        state, m = step(state, bad, t5_nan, jax.random.PRNGKey(0))
    assert not bool(m["finite"]) and int(state.skipped) == 1 and int(state.step) == 1
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, np.asarray(b))
    with sharding.use_mesh(mesh):
        state, m = step(state, bad, t5p, jax.random.PRNGKey(0))
    assert bool(m["finite"]) and int(state.skipped) == 1


def test_ema_every_n_steps():
    c = _cfg(ema_every=2, ema_decay=0.5)
    mesh = sharding.make_mesh(data=-1)
    state, step, t5p, _ = _setup(c, mesh)
    p0 = np.asarray(state.params["heads"])
    b = _put(_batch(c), mesh)
    with sharding.use_mesh(mesh):
        state, _ = step(state, b, t5p, jax.random.PRNGKey(0))
        np.testing.assert_array_equal(np.asarray(state.ema["heads"]), p0)          # not yet
        state, _ = step(state, b, t5p, jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(state.ema["heads"]), 0.5 * p0 + 0.5 * np.asarray(state.params["heads"]),
                               atol=1e-7)


@pytest.mark.parametrize("name", ["cosine", "inverse_sqrt"])
def test_schedules(name):
    c = _cfg(schedule=name, warmup_steps=10, total_steps=110, learning_rate=1.0)
    f = make_schedule(c)
    assert float(f(0)) == 0.0 and float(f(5)) == pytest.approx(0.5)
    if name == "cosine":
        assert float(f(10)) == pytest.approx(1.0) and float(f(60)) == pytest.approx(0.5) and float(f(110)) < 1e-6
    else:
        assert float(f(10)) == pytest.approx(1.0) and float(f(40)) == pytest.approx(0.5)


def test_init_from_released_checkpoint(tmp_path, monkeypatch):
    """Fine-tuning is a config switch: the initial params are the converted checkpoint's."""
    from tests.reference import magnet_ref as R
    from magnet_jax.convert import load_audiocraft_lm
    from magnet_jax.convert.audiocraft import flat_params
    from magnet_jax.training.loop import initial_model
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    R.make_checkpoint(tmp_path / "ckpt", R.magnet_xp_cfg(dim=64, num_heads=4, num_layers=2, segment_duration=2))
    c = get_config("tiny")
    c.model.text_dim = 768
    c.init_from = str(tmp_path / "ckpt")
    mesh = sharding.make_mesh(data=-1)
    _, params, specs = initial_model(c, model_config(c), mesh)
    want = flat_params(load_audiocraft_lm(tmp_path / "ckpt"))
    np.testing.assert_array_equal(np.asarray(params["layers"]["ffn"]["w1"]), want["layers.ffn.w1"])
    np.testing.assert_array_equal(np.asarray(params["heads"]), want["heads"])
    assert params["layers"]["ffn"]["w1"].sharding.spec == specs["layers"]["ffn"]["w1"]
    c.model.num_layers = 3
    with pytest.raises(ValueError, match="does not match config.model"):
        initial_model(c, model_config(c), mesh)
