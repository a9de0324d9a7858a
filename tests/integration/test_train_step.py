"""The sharded train step on 8 fake CPU devices vs one device; accumulation; NaN guard; EMA; schedules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from magnet_jax import sharding
from magnet_jax.configs import get_config
from magnet_jax.convert.t5 import load_text_stack
from magnet_jax.model import MagnetLM
from magnet_jax.sharding import batch_shardings
from magnet_jax.training import TrainConfig
from magnet_jax.training import state as S
from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
from magnet_jax.training.step import make_train_step

KEYS = ("codes", "padding_mask", "text_ids", "text_mask")


def _cfg(**kw) -> TrainConfig:
    c = get_config("tiny")
    c.model.segment_duration = 0.6                      # 30 frames
    c.update({"batch_size": 8, "warmup_steps": 2, "learning_rate": 1e-3, **kw})
    return TrainConfig.from_config(c)


def _batch(c: TrainConfig, seed=0):
    mcfg, B = c.model, c.data.batch_size
    T, S_txt = mcfg.segment_frames, c.text.max_length
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {"codes": np.asarray(jax.random.randint(k[0], (B, 4, T), 0, mcfg.card)),
            "padding_mask": np.arange(T)[None].repeat(B, 0) < np.array([T] * 6 + [20, 25])[:, None],
            "text_ids": np.asarray(jax.random.randint(k[1], (B, S_txt), 0, 100)),
            "text_mask": np.asarray((jnp.arange(S_txt)[None] < jax.random.randint(k[2], (B, 1), 0, S_txt)))
            .astype(np.int32)}


def _put(b, mesh):
    return jax.device_put(b, batch_shardings(KEYS, mesh))


def _setup(c: TrainConfig, mesh, exact_guard=False):
    """The trainer's step; ``exact_guard``: the non-finite guard checks the updates' norm instead of the bound."""
    mcfg = c.model
    _, t5 = load_text_stack("tiny", mcfg.text_dim)
    t5g, t5s = nnx.split(t5.module)
    graphdef, params, pspecs = S.split_model(MagnetLM(mcfg, rngs=nnx.Rngs(0)))
    tx = make_optimizer(c.optim)
    specs = S.state_specs(tx, params, pspecs)
    state = S.init_state(tx, params, specs, mesh)
    step = make_train_step(graphdef, t5g, c.step, tx, make_schedule(c.optim), mcfg, specs, mesh, KEYS,
                           update_bound=None if exact_guard else finite_update_bound(c.optim))
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


def test_ema_is_bias_corrected_every_n_steps():
    """audiocraft ModuleDictEMA(unbias=True): count = count*decay + 1, w = 1/count; the first EMA update
    copies the params (the init has weight 0), the second mixes with w = 1/(1 + decay)."""
    c = _cfg(ema_every=2, ema_decay=0.5)
    mesh = sharding.make_mesh(data=-1)
    state, step, t5p, _ = _setup(c, mesh)
    p0 = np.asarray(state.params["heads"])
    b = _put(_batch(c), mesh)
    params = []
    with sharding.use_mesh(mesh):
        for i in range(4):
            state, _ = step(state, b, t5p, jax.random.PRNGKey(0))
            params.append(np.asarray(state.params["heads"]))
            if i == 0:
                np.testing.assert_array_equal(np.asarray(state.ema["heads"]), p0)          # not yet
            if i == 1:
                np.testing.assert_array_equal(np.asarray(state.ema["heads"]), params[1])   # first update: copy
                assert float(state.ema_count) == 1.0
    w = 1.0 / 1.5                                                                          # count 0.5*1 + 1
    np.testing.assert_allclose(np.asarray(state.ema["heads"]), (1 - w) * params[1] + w * params[3], atol=1e-7)
    assert float(state.ema_count) == pytest.approx(1.5)
    assert not np.allclose(params[3], p0)


def test_logged_learning_rate_is_the_applied_one_after_skips():
    """Skipped steps do not advance optax's count: the logged lr is schedule(step - skipped)."""
    c = _cfg(warmup_steps=10, learning_rate=1.0)
    mesh = sharding.make_mesh(data=-1)
    state, step, t5p, _ = _setup(c, mesh)
    sched = make_schedule(c.optim)
    b = _put(_batch(c), mesh)
    t5_nan = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), t5p)
    lrs = []
    with sharding.use_mesh(mesh):
        for t in (t5p, t5_nan, t5_nan, t5p, t5p):
            state, m = step(state, b, t, jax.random.PRNGKey(0))
            lrs.append(float(m["learning_rate"]))
    np.testing.assert_allclose(lrs, [float(sched(i)) for i in (0, 1, 1, 1, 2)], rtol=1e-6)
    count = [x for x in jax.tree.leaves(state.opt_state) if x.ndim == 0 and x.dtype == jnp.int32]
    assert count and all(int(x) == 3 for x in count)                   # optax agrees: 3 updates applied
    assert int(m["consecutive_skips"]) == 0 and int(state.skipped) == 2


def test_consecutive_skips_are_counted_and_reset():
    c = _cfg()
    mesh = sharding.make_mesh(data=-1)
    state, step, t5p, _ = _setup(c, mesh)
    b = _put(_batch(c), mesh)
    t5_nan = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), t5p)
    seen = []
    with sharding.use_mesh(mesh):
        for t in (t5_nan, t5_nan, t5_nan, t5p, t5_nan):
            state, m = step(state, b, t, jax.random.PRNGKey(0))
            seen.append(int(m["consecutive_skips"]))
    assert seen == [1, 2, 3, 0, 1]


@pytest.mark.parametrize("max_grad_norm", [0.0, 1.0])
def test_update_that_overflows_the_params_is_skipped(max_grad_norm):
    """A finite loss whose update is not finite (lr 3e38 overflows float32) must not reach the params: without
    clipping the step checks the updates' norm, with it the bound of optim.finite_update_bound refuses it."""
    c = _cfg(learning_rate=3e38, warmup_steps=0, schedule="constant", max_grad_norm=max_grad_norm)
    mesh = sharding.make_mesh(data=-1)
    state, step, t5p, _ = _setup(c, mesh)
    before = jax.tree.map(np.asarray, state.params)
    with sharding.use_mesh(mesh):
        for _ in range(2):
            state, m = step(state, _put(_batch(c), mesh), t5p, jax.random.PRNGKey(0))
    assert S.all_finite(state.params) and S.all_finite(state.ema)
    assert int(state.skipped) >= 1
    if int(state.skipped) == 2:
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params)):
            np.testing.assert_array_equal(a, np.asarray(b))


def test_bounded_guard_trains_like_the_exact_one():
    """The cheap guard (a bound known before the optimizer runs) changes no value: four steps, one of them
    non-finite, leave the same params, moments and counters as the guard that checks the updates' norm."""
    c = _cfg()
    mesh = sharding.make_mesh(data=-1)
    out = []
    for exact in (False, True):
        state, step, t5p, _ = _setup(c, mesh, exact_guard=exact)
        t5_nan = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), t5p)
        with sharding.use_mesh(mesh):
            for i, t in enumerate((t5p, t5_nan, t5p, t5p)):
                state, m = step(state, _put(_batch(c, seed=i), mesh), t, jax.random.PRNGKey(3))
        out.append(jax.tree.map(np.asarray, (state.params, state.opt_state, state.skipped, state.step)))
    assert int(out[0][2]) == 1 and int(out[0][3]) == 4
    for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["cosine", "inverse_sqrt"])
def test_schedules(name):
    c = _cfg(schedule=name, warmup_steps=10, total_steps=110, learning_rate=1.0)
    f = make_schedule(c.optim)
    assert float(f(0)) == 0.0 and float(f(5)) == pytest.approx(0.5)
    if name == "cosine":
        assert float(f(10)) == pytest.approx(1.0) and float(f(60)) == pytest.approx(0.5) and float(f(110)) < 1e-6
    else:
        assert float(f(10)) == pytest.approx(1.0) and float(f(40)) == pytest.approx(0.5)


def test_cosine_schedule_equals_audiocraft_formula():
    """optax.warmup_cosine_decay_schedule = audiocraft CosineLRScheduler (linear warmup, cosine to lr_min)."""
    c = _cfg(schedule="cosine", warmup_steps=40, total_steps=1000, learning_rate=3e-4, lr_min_ratio=0.1)
    f = make_schedule(c.optim)
    s = np.arange(0, 1100)
    progress = np.clip((s - 40) / 960, 0, 1)
    want = np.where(s < 40, 3e-4 * s / 40, 3e-5 + (3e-4 - 3e-5) * 0.5 * (1 + np.cos(np.pi * progress)))
    np.testing.assert_allclose(np.asarray(f(s)), want, rtol=2e-6, atol=1e-12)
