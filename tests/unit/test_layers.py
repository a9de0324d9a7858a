"""The LM's building blocks (magnet_jax/model/layers.py): the custom gradients against plain autodiff, and the
layer's one body (``TransformerLayer.step``) in its decoding forms against the full forward."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.model.attention_masks import causal_mask
from magnet_jax.model.layers import TransformerLayer, dense, gelu_erf, rotary


def test_gelu_erf_values_and_gradient_equal_autodiff():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 33, 64)) * 3.0
    g = jax.random.normal(jax.random.PRNGKey(1), x.shape)
    want_y, want_vjp = jax.vjp(lambda x: jax.nn.gelu(x, approximate=False), x)
    got_y, got_vjp = jax.vjp(gelu_erf, x)
    np.testing.assert_array_equal(np.asarray(got_y), np.asarray(want_y))
    np.testing.assert_allclose(np.asarray(got_vjp(g)[0]), np.asarray(want_vjp(g)[0]), rtol=1e-5, atol=1e-6)
    second = lambda f: jax.grad(lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(f(x)))(x)))(x)  # noqa: E731
    np.testing.assert_allclose(np.asarray(second(gelu_erf)),
                               np.asarray(second(lambda x: jax.nn.gelu(x, approximate=False))), rtol=1e-4, atol=1e-5)


def test_dense_bf16_gradients_keep_the_input_dtypes():
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 16))
    k = jax.random.normal(jax.random.PRNGKey(4), (16, 3, 4))
    dx, dk = jax.grad(lambda x, k: jnp.sum(dense(x, k, jnp.bfloat16).astype(jnp.float32)), argnums=(0, 1))(x, k)
    assert dx.dtype == x.dtype == dk.dtype == k.dtype
    want = jax.grad(lambda x, k: jnp.sum(jnp.einsum("bti,ijk->btjk", x, k)), argnums=(0, 1))(x, k)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(want[0]), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(np.asarray(dk), np.asarray(want[1]), rtol=2e-2, atol=5e-2)


def _layer_and_inputs(heads=2, dim=16, N=4, T=7, S=5, rope=None):
    layer = TransformerLayer(dim, heads, 4 * dim, 1e-5, rngs=nnx.Rngs(0), rope=rope)
    k = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(k[0], (N, T, dim))
    cond = jax.random.normal(k[1], (N, S, dim)).at[N // 2:].set(0.0)       # rows >= N/2: CFG's zero condition
    return layer, x, cond


def test_layer_step_skips_the_zero_condition_rows_exactly():
    layer, x, cond = _layer_and_inputs()
    n = x.shape[0] // 2
    full = layer(x, cond, None, None, jnp.float32)       # rows < n conditional, rows >= n a zero condition
    kv = layer.cross_attn.keys_values(cond[:n], jnp.float32)
    # CFG pairs (decoding.guidance: row 2i item i's conditional row, 2i + 1 its null row)
    perm = np.stack([np.arange(n), np.arange(n) + n], 1).reshape(-1)
    got, new = layer.step(x[perm], kv, None, jnp.float32, n_cond=n)
    assert new is None
    want = np.asarray(full)[perm]
    np.testing.assert_array_equal(np.asarray(got)[1::2], want[1::2])       # 0 added to the null rows
    np.testing.assert_allclose(np.asarray(got)[::2], want[::2], rtol=1e-6, atol=1e-6)
    nothing, _ = layer.step(x[n:], kv[:0], None, jnp.float32, n_cond=0)
    np.testing.assert_array_equal(np.asarray(nothing), np.asarray(full[n:]))
    with pytest.raises(ValueError, match="CFG pairs"):
        layer.step(x[:3], kv, None, jnp.float32, n_cond=1)


@pytest.mark.parametrize("rope", [None, (10000.0, 1.0), (100.0, 0.5)])
def test_layer_step_with_a_cache_equals_the_causal_forward(rope):
    layer, x, cond = _layer_and_inputs(rope=rope)
    N, T, _ = x.shape
    full = layer(x, cond, causal_mask(T, T), None, jnp.float32)
    kv = layer.cross_attn.keys_values(cond, jnp.float32)
    heads, hd = layer.self_attn.qkv.shape[2:]
    cache = (jnp.zeros((N, T, heads, hd)), jnp.zeros((N, T, heads, hd)))
    outs, p = [], 0
    for n in (3, 1, 3):                                                      # a prefill, then steps
        out, (k, v) = layer.step(x[:, p:p + n], kv, None, jnp.float32, self_mask=causal_mask(n, T, p), cache=cache,
                                 pos=p)
        cache = tuple(jax.lax.dynamic_update_slice(c, a, (0, p, 0, 0)) for c, a in zip(cache, (k, v)))
        outs.append(out)
        p += n
    np.testing.assert_allclose(np.asarray(jnp.concatenate(outs, 1)), np.asarray(full), rtol=1e-5, atol=1e-5)


def test_rotary_is_a_relative_rotation():
    """audiocraft's RoPE: norms kept (scale 1), scale 0 is the identity, and a query / key dot product depends
    only on their distance, not on where the pair sits (what lets attention find a neighbour anywhere)."""
    k = jax.random.split(jax.random.key(1), 2)
    q, key = jax.random.normal(k[0], (1, 1, 2, 8)), jax.random.normal(k[1], (1, 1, 2, 8))
    at = lambda x, t, s=1.0: rotary(x, jnp.asarray([t]), 50.0, s)                    # noqa: E731
    np.testing.assert_allclose(np.linalg.norm(np.asarray(at(q, 37)), axis=-1), np.linalg.norm(np.asarray(q), axis=-1),
                               rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(at(q, 37, 0.0)), np.asarray(q))
    dots = [float(jnp.sum(at(q, t + 3) * at(key, t))) for t in (0, 11, 250)]
    np.testing.assert_allclose(dots, dots[0], rtol=1e-4, atol=1e-4)
    assert abs(float(jnp.sum(at(q, 4) * at(key, 0))) - dots[0]) > 1e-3                 # another distance differs
    assert at(q.astype(jnp.bfloat16), 5).dtype == jnp.bfloat16


def test_positional_embedding_names_checked_and_rope_changes_the_model():
    from magnet_jax.model.config import MagnetConfig
    from magnet_jax.model.magnet import MagnetLM
    with pytest.raises(ValueError, match="positional_embedding must be one of sin, rope, sin_rope"):
        MagnetConfig(positional_embedding="alibi")
    with pytest.raises(ValueError, match="even head dim"):
        MagnetConfig(dim=30, num_heads=2, positional_embedding="rope")
    cfg = MagnetConfig(n_q=2, card=16, dim=16, num_heads=2, num_layers=1, text_dim=8, segment_duration=0.2)
    codes = jax.random.randint(jax.random.key(0), (1, 2, 10), 0, 16)
    h, m = jnp.ones((1, 3, 8)), jnp.ones((1, 3))
    out = {p: np.asarray(MagnetLM(cfg.replace(positional_embedding=p), rngs=nnx.Rngs(0)).stage_logits(codes, h, m, 0))
           for p in ("sin", "rope", "sin_rope")}
    # same weights: rope drops the input sinusoid and rotates q / k instead, sin_rope does both
    for a, b in (("sin", "rope"), ("sin", "sin_rope"), ("rope", "sin_rope")):
        assert np.abs(out[a] - out[b]).max() > 1e-4, (a, b)
