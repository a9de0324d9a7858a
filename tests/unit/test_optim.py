"""optim.finite_update_bound: the train step's proof that an AdamW step of finite gradients is finite."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from magnet_jax.training.config import OptimConfig
from magnet_jax.training.optim import finite_update_bound, make_optimizer


def _cfg(**kw):
    return dataclasses.replace(OptimConfig(schedule="constant", warmup_steps=0), **kw)


@pytest.mark.parametrize("kw", [dict(max_grad_norm=0.0), dict(eps=0.0)])
def test_no_bound_without_clipping_or_eps(kw):
    assert finite_update_bound(_cfg(**kw)) is None


def _steps(o, params, grads_seq, guard=True):
    """AdamW steps as the train step takes them: each one only where the bound admits it (``guard``)."""
    tx, ok = make_optimizer(o), finite_update_bound(o)
    st, applied = tx.init(params), 0
    for g in grads_seq:
        if guard and not bool(ok(o.learning_rate, params)):
            continue
        u, st = tx.update(g, st, params)
        params, applied = optax.apply_updates(params, u), applied + 1
    return params, applied


def test_bound_admits_what_stays_finite_and_refuses_what_overflows():
    params = {"w": jnp.array([[1e3, -2.0], [0.5, 0.0]], jnp.float32), "b": jnp.zeros(3, jnp.float32)}
    rng = np.random.default_rng(0)
    # spiky then vanishing gradients: the largest Adam ratios m_hat / (sqrt(v_hat) + eps) a run can reach
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape) * 10.0 ** rng.integers(-30, 3),
                                                jnp.float32), params) for _ in range(6)]
    grads += [jax.tree.map(jnp.zeros_like, params)] * 3
    for lr in (1e-4, 1.0, 1e20, 8e28):
        o = _cfg(learning_rate=lr)
        assert bool(finite_update_bound(o)(lr, params)), lr                 # the first step is admitted
        out, applied = _steps(o, params, grads)
        assert applied >= 1 and all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out)), lr
        if lr == 1e20:      # lr * wd = 1e19: the params grow geometrically; the bound stops them before inf
            assert applied < len(grads) and not all(
                bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(_steps(o, params, grads, guard=False)[0]))
    # where one step does overflow, the bound has refused it
    o = _cfg(learning_rate=3e38)
    assert not bool(finite_update_bound(o)(3e38, params))
    assert not all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(_steps(o, params, grads[:1], False)[0]))
    assert not bool(finite_update_bound(_cfg())(1e30, params))              # lr 1e30 * C / eps overflows
    bad = {"w": params["w"].at[0, 0].set(jnp.inf), "b": params["b"]}
    assert not bool(finite_update_bound(_cfg())(1e-4, bad))                # non-finite params: never admitted
