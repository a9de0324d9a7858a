"""decoding.guidance: CFG's pair layout (row 2i conditional, 2i + 1 null) and audiocraft's guidance formula."""
import jax.numpy as jnp
import numpy as np

from magnet_jax.decoding import guidance


def test_pairs_with_null_split_and_guide():
    x = jnp.arange(12.0).reshape(3, 4) + 1.0
    p = guidance.pairs(x)
    np.testing.assert_array_equal(np.asarray(p), np.repeat(np.asarray(x), 2, axis=0))
    z = guidance.with_null(x)
    np.testing.assert_array_equal(np.asarray(z[0::2]), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(z[1::2]), 0.0)
    null = -x
    cond, uncond = guidance.split(guidance.with_null(x, null))
    np.testing.assert_array_equal(np.asarray(cond), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(uncond), np.asarray(null))
    # audiocraft: uncond + (cond - uncond) * coef, per item
    np.testing.assert_allclose(np.asarray(guidance.guide(guidance.with_null(x, null), 3.0)),
                               np.asarray(null + (x - null) * 3.0))
