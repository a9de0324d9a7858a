"""The LM's custom-gradient building blocks (magnet_jax/model/layers.py) against plain autodiff."""
import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.model.layers import dense, gelu_erf


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
