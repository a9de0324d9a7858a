"""attention_impl at the model level: the LMs with ``dot_product_attention`` / ``auto`` equal the default "xla"
path (fp32 logits within 1e-5, gradients too), "splash" is refused on CPU at construction, and bf16 compute
keeps the residual stream and the logits float32."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.model import MagnetConfig, MagnetLM
from magnet_jax.model.config import MusicGenConfig
from magnet_jax.model.musicgen import MusicGenLM
from magnet_jax.objectives import magnet as masking

CFG = MagnetConfig(dim=64, num_heads=4, num_layers=2, text_dim=32, segment_duration=1.0)


def _inputs(B=2, T=30, S=6, cfg=CFG):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    codes = jax.random.randint(k1, (B, cfg.n_q, T), 0, cfg.card + 1)
    hidden = jax.random.normal(k2, (B, S, cfg.text_dim))
    mask = jnp.ones((B, S), jnp.int32).at[1, S // 2:].set(0)       # a padded text row
    return codes, hidden, mask


def _lm(**kw):
    return MagnetLM(CFG.replace(**kw), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def pair():
    return _lm(), _lm(attention_impl="dot_product_attention")


@pytest.mark.parametrize("stage", [0, 1, "traced", "per_sample"])
def test_dot_product_attention_model_equals_xla(pair, stage):
    ref, dpa = pair
    codes, h, m = _inputs()
    s = {"traced": jnp.asarray(2), "per_sample": jnp.asarray([0, 3])}.get(stage, stage)
    fn = (lambda lm, s: lm.stage_logits(codes, h, m, s)) if stage == "per_sample" else \
        (lambda lm, s: lm(codes, h, m, stage=s))
    a = jax.jit(fn)(ref, s) if not isinstance(s, int) else fn(ref, s)
    b = jax.jit(fn)(dpa, s) if not isinstance(s, int) else fn(dpa, s)
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


def test_dot_product_attention_training_gradients_equal_xla(pair):
    codes, h, m = _inputs()
    batch = {"inputs": codes, "stage": jnp.asarray(1), "targets": codes[:, 1] % CFG.card,
             "weights": jnp.ones(codes[:, 1].shape, bool), "text_mask": m}
    grads = []
    for lm in pair:
        gd, st = nnx.split(lm)
        grads.append(jax.jit(jax.grad(lambda s: masking.loss_from_batch(nnx.merge(gd, s), batch, h)[0]))(st))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


def test_auto_on_cpu_is_the_xla_path_exactly(pair):
    codes, h, m = _inputs()
    np.testing.assert_array_equal(_lm(attention_impl="auto")(codes, h, m, stage=1), pair[0](codes, h, m, stage=1))


@pytest.mark.parametrize("impl", ["splash", "pallas"])
def test_splash_refused_at_construction_on_cpu(impl):
    with pytest.raises(ValueError, match="needs a TPU"):
        _lm(attention_impl=impl)


def test_musicgen_dot_product_attention_equals_xla():
    cfg = MusicGenConfig(dim=64, num_heads=4, num_layers=2, text_dim=32, segment_duration=1.0)
    codes, h, m = _inputs(cfg=cfg)
    a = MusicGenLM(cfg, rngs=nnx.Rngs(0))(codes, h, m)
    b = MusicGenLM(cfg.replace(attention_impl="dot_product_attention"), rngs=nnx.Rngs(0))(codes, h, m)
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", ["xla", "dot_product_attention"])
def test_bf16_compute_keeps_residual_and_logits_float32(pair, impl):
    codes, h, m = _inputs()
    lm = _lm(dtype="bfloat16", attention_impl=impl)
    cond = lm.project_text(h, m)
    assert cond.dtype == jnp.bfloat16                                 # matmuls in bf16 ...
    hid = lm.hidden(codes, cond, 1, m)
    logits = lm(codes, h, m, stage=1)
    assert hid.dtype == jnp.float32 and logits.dtype == jnp.float32   # ... residual stream and logits fp32
    assert bool(jnp.isfinite(logits).all())
    ref = pair[0](codes, h, m, stage=1)
    err = float(jnp.abs(logits - ref).max() / jnp.abs(ref).max())
    assert err < 3e-2, err
    assert lm.embed_codes(codes).dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(lm, nnx.Param)))   # fp32 master weights


def test_splash_under_a_mesh_runs_per_shard_and_equals_xla(monkeypatch):
    """Under ``jax.set_mesh`` the kernel (Pallas interpret mode on CPU) runs in a shard_map over batch (data)
    and heads (tensor): a Pallas kernel has no GSPMD partitioning rule."""
    from magnet_jax import sharding
    from magnet_jax.model import attention as A
    from magnet_jax.model.attention_masks import stage_self_attention_mask
    calls, real = [], jax.shard_map
    monkeypatch.setattr(jax, "shard_map", lambda *a, **k: calls.append(k["in_specs"]) or real(*a, **k))
    mesh = sharding.make_mesh(data=2, fsdp=1, tensor=2, devices=jax.devices()[:4])
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 40, 2, 16)) for i in range(3))
    m = stage_self_attention_mask(40, jnp.asarray(2), 5)
    with sharding.use_mesh(mesh):
        out = jax.jit(lambda q, k, v: A.attention_splash(q, k, v, m, interpret=True))(q, k, v)
    assert len(calls) == 1
    np.testing.assert_allclose(out, A.attention(q, k, v, m, "xla"), atol=1e-5, rtol=0)
