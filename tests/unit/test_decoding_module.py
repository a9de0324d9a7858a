"""decoding/_module.py: one key type for every generate, and the module rebuilt from leaves in a loop body."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.decoding._module import as_key, rebuilder
from magnet_jax.model.layers import LayerNorm


def _draws(key):
    return np.asarray(jax.random.uniform(jax.random.fold_in(key, 7), (5,)))


def test_as_key_gives_typed_keys_with_the_same_streams():
    for rng, seed in [(None, 0), (3, 3), (np.int64(4), 4), (jax.random.key(5), 5), (jax.random.PRNGKey(6), 6)]:
        key = as_key(rng)
        assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        np.testing.assert_array_equal(_draws(key), _draws(jax.random.PRNGKey(seed)))   # a raw key's draws
    for bad in ("seven", True, 1.5, np.zeros(2, np.float32)):
        with pytest.raises(ValueError, match="rng must be a jax.random.key or an int seed"):
            as_key(bad)


def test_rebuilder_works_inside_a_loop_body():
    norm = LayerNorm(4)
    norm.scale[...] = jnp.arange(1.0, 5.0)
    graphdef, state = nnx.split(norm)
    x = jnp.asarray([[1.0, -2.0, 0.5, 3.0]])

    @jax.jit
    def run(state):
        model = rebuilder(graphdef, state)
        return jax.lax.fori_loop(0, 3, lambda i, acc: acc + model()(x), jnp.zeros_like(x))

    np.testing.assert_allclose(np.asarray(run(state)), 3 * np.asarray(norm(x)), rtol=1e-6)
    model = rebuilder(graphdef, state)
    assert model() is not model()                                           # a new module per call
