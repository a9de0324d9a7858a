"""MusicGen's sample_next (audiocraft ``sample_top_k`` / ``sample_top_p`` + ``multinomial``) against closed forms:
the support (top-k keeps ties at the k-th largest; top-p the reference nucleus) and the renormalised frequencies."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.decoding.sampling import sample_next

_draw = jax.jit(jax.vmap(sample_next, in_axes=(0, None, None)), static_argnums=2)


def _nucleus(probs, top_p):
    """audiocraft's ``sample_top_p`` support: sorted descending (ties: lower index first), kept where the mass
    sorted before is <= top_p."""
    order = np.argsort(-probs, axis=-1, kind="stable")
    ps = np.take_along_axis(probs, order, -1)
    out = np.zeros(probs.shape, bool)
    np.put_along_axis(out, order, (np.cumsum(ps, -1) - ps) <= top_p, -1)
    return out


def _freq(cfg, logits, n=20000, seed=0):
    tok = np.asarray(_draw(jax.random.split(jax.random.key(seed), n), jnp.asarray(logits), cfg))
    return np.stack([np.bincount(tok[:, r], minlength=logits.shape[-1]) for r in range(logits.shape[0])]) / n


def test_top_k_support_ties_and_frequencies():
    # row 0: distinct; row 1: the 3rd and 4th largest tie, so top-3 keeps four tokens (probs >= the k-th largest)
    p = np.float32([[0.4, 0.25, 0.15, 0.1, 0.06, 0.04], [0.3, 0.3, 0.125, 0.125, 0.1, 0.05]])
    f = _freq(MusicGenGenerationConfig(top_k=3), np.log(p))
    want = np.where(p >= np.sort(p, -1)[:, ::-1][:, 2:3], p, 0)
    want /= want.sum(-1, keepdims=True)
    assert ((f > 0) == (want > 0)).all()
    np.testing.assert_allclose(f, want, atol=0.015)


def test_top_p_is_the_reference_nucleus_and_plain_sampling_is_multinomial():
    p = np.float32([[0.5, 0.3, 0.15, 0.05], [0.125, 0.5, 0.125, 0.125]])
    # nucleus 0.7: row 0 {0.5, 0.3} (mass before 0.15 is 0.8); row 1: 0.5, then the near-tied ~0.125s in order
    probs = np.asarray(jax.nn.softmax(jnp.log(p), -1))         # what the sampler sees (log/exp round-trip)
    keep = _nucleus(probs, 0.7)
    assert keep[0].tolist() == [True, True, False, False] and keep[1, 1]
    f = _freq(MusicGenGenerationConfig(top_p=0.7, top_k=0), np.log(p))
    want = np.where(keep, probs, 0)
    want /= want.sum(-1, keepdims=True)
    assert ((f > 0) == keep).all()
    np.testing.assert_allclose(f, want, atol=0.015)
    f = _freq(MusicGenGenerationConfig(top_k=0, temp=2.0), np.log(p), seed=1)
    want = p ** 0.5 / (p ** 0.5).sum(-1, keepdims=True)                     # softmax(logits / 2)
    np.testing.assert_allclose(f, want, atol=0.015)


def test_greedy_and_top_k_on_a_musicgen_shaped_batch():
    rs = np.random.RandomState(0)
    logits = jnp.asarray(rs.randn(2, 4, 2048).astype(np.float32) * 3)            # [B, K, card]
    g = sample_next(None, logits, MusicGenGenerationConfig(use_sampling=False))
    np.testing.assert_array_equal(np.asarray(g), np.argmax(np.asarray(logits), -1))
    top = np.argsort(-np.asarray(logits), -1)[..., :250]
    for s in range(5):
        tok = np.asarray(jax.jit(sample_next, static_argnums=2)(jax.random.key(s), logits, MusicGenGenerationConfig()))
        assert tok.shape == (2, 4) and (tok[..., None] == top).any(-1).all()
