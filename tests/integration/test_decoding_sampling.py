"""sample_tokens: greedy, nucleus (top-p), top-k and plain sampling, against closed forms."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.decoding import GenerationConfig, sample_tokens


def _nucleus(probs, p):
    """The reference's ``sample_top_p`` support: sorted descending (ties: lower index first), keep where the
    mass sorted before is <= p."""
    order = np.argsort(-probs, axis=-1, kind="stable")
    ps = np.take_along_axis(probs, order, -1)
    keep_sorted = (np.cumsum(ps, -1) - ps) <= p
    out = np.zeros_like(keep_sorted)
    np.put_along_axis(out, order, keep_sorted, -1)
    return out


_sample = jax.jit(jax.vmap(sample_tokens, in_axes=(0, None, None, None)), static_argnums=3)


def test_top_p_and_top_k_support_and_confidences():
    rs = np.random.RandomState(0)
    logits = jnp.asarray(rs.randn(64, 300).astype(np.float32) * 3)
    keys = jax.random.split(jax.random.key(0), 20)
    cfg, kcfg = GenerationConfig(top_p=0.9), GenerationConfig(top_p=0.0, top_k=7)
    for temp in (3.0, 1.0, 0.3):
        probs = jax.nn.softmax(logits / temp, -1)
        nucleus = _nucleus(np.asarray(probs), 0.9)
        tok, conf = _sample(keys, logits, probs, cfg)                 # [20, 64]
        assert nucleus[np.arange(64)[None], np.asarray(tok)].all()
        np.testing.assert_array_equal(np.asarray(conf[0]), np.asarray(probs))   # untruncated confidences
        top7 = np.argsort(-np.asarray(probs), -1)[:, :7]
        tok, conf = _sample(keys, logits, probs, kcfg)
        assert (np.asarray(tok)[..., None] == top7[None]).any(-1).all()
        np.testing.assert_allclose(np.asarray(conf).sum(-1), 1.0, rtol=1e-5)   # renormalised top-k probs
        assert ((np.asarray(conf[0]) > 0).sum(-1) == 7).all()


def test_empirical_distribution_and_greedy():
    small = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]], jnp.float32))
    probs = jax.nn.softmax(small, -1)
    keys = jax.random.split(jax.random.key(1), 20000)
    tok = jax.vmap(lambda k: sample_tokens(k, small, probs, GenerationConfig(top_p=0.7))[0])(keys)
    freq = np.bincount(np.asarray(tok).ravel(), minlength=4) / 20000
    np.testing.assert_allclose(freq, [0.625, 0.375, 0, 0], atol=0.015)   # nucleus {0.5, 0.3}, renormalised
    tok = jax.vmap(lambda k: sample_tokens(k, small, probs, GenerationConfig(top_p=0.0))[0])(keys)
    np.testing.assert_allclose(np.bincount(np.asarray(tok).ravel(), minlength=4) / 20000, [0.5, 0.3, 0.15, 0.05],
                               atol=0.015)
    greedy, conf = sample_tokens(None, small, probs, GenerationConfig(use_sampling=False))
    assert int(greedy[0]) == 0 and conf is probs


def test_top_p_ties_at_the_boundary_keep_the_reference_set():
    """Exact ties at the nucleus boundary: the reference keeps the tied tokens whose preceding sorted mass is
    <= p (ties by index), not the whole tie group (issue 11 item 9)."""
    rows = [np.float32([0.125, 0.5, 0.125, 0.125, 0.125]),
            np.float32([0.25, 0.25, 0.25, 0.25, 0.0]),
            np.float32([0.1875, 0.0625, 0.25, 0.0625, 0.0625, 0.0625, 0.25, 0.0625])]
    for row, p, support in [(rows[0], 0.7, [0, 1, 2]),                # preceding masses 0, .5, .625 | .75
                            (rows[0], 0.5, [0, 1]),
                            (rows[0], 0.4, [1]),
                            (rows[1], 0.5, [0, 1, 2]),                # 0, .25, .5 | .75
                            (rows[1], 0.2, [0]),
                            (rows[2], 0.75, [0, 1, 2, 3, 6])]:        # .25 .25 .1875 | .0625 x5: 0 .25 .5 .6875 .75
        probs = jnp.asarray(row[None])
        np.testing.assert_array_equal(np.flatnonzero(_nucleus(np.asarray(probs), p)[0]), support)
        keys = jax.random.split(jax.random.key(0), 4000)
        tok = np.asarray(_sample(keys, jnp.log(probs), probs, GenerationConfig(top_p=p))[0])[:, 0]
        assert set(np.unique(tok)) == set(support), (row, p)
        freq = np.bincount(tok, minlength=len(row))[support] / len(tok)
        np.testing.assert_allclose(freq, row[support] / row[support].sum(), atol=0.03)


def test_nucleus_and_kth_largest_on_tie_heavy_rows_match_a_sort():
    """Coarsely quantised probabilities (many exact ties, some rows cut inside a tie group, others not) and plain
    fp32 rows, batched: the sort-free nucleus equals the reference's sorted support row by row (the tie ranks are
    computed only when some row needs them), and kth_largest equals the sorted k-th value."""
    from magnet_jax.decoding.sampling import kth_largest, nucleus
    rs = np.random.RandomState(3)
    coarse = np.round(rs.rand(48, 40) * 8).astype(np.float32) + 1
    coarse /= coarse.sum(-1, keepdims=True)
    fine = np.asarray(jax.nn.softmax(jnp.asarray(rs.randn(16, 40).astype(np.float32)) * 2, -1))
    for probs in (coarse, fine, np.concatenate([coarse[:8], fine[:8]])):
        for p in (0.05, 0.3, 0.62, 0.9, 0.999):
            np.testing.assert_array_equal(np.asarray(nucleus(jnp.asarray(probs), p)), _nucleus(probs, p), err_msg=p)
        for k in (1, 5, 17, 40):
            np.testing.assert_array_equal(np.asarray(kth_largest(jnp.asarray(probs), k))[:, 0],
                                          -np.sort(-probs, -1)[:, k - 1])
