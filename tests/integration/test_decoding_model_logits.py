"""The LM's ``logits_fn`` (text keys / values once per generate, cross-attention skipped for the null rows,
one head) equals the plain full-batch CFG through ``MagnetLM.stage_logits``."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.decoding import cfg_logits_fn
from magnet_jax.model import MagnetConfig, MagnetLM

B, S, E, K, T = 2, 6, 768, 4, 27


def _plain_cfg(lm, codes, hidden, mask, stage, coef):
    cond = lm.project_text(hidden, mask)
    cond2 = jnp.concatenate([cond, jnp.zeros_like(cond)], 0)
    mask2 = jnp.concatenate([mask, jnp.zeros_like(mask)], 0)
    both = lm.stage_logits(jnp.concatenate([codes, codes], 0), None, mask2, stage, cond=cond2)
    n = codes.shape[0]
    return both[n:] + (both[:n] - both[n:]) * coef


@pytest.mark.parametrize("mask_text_padding,scan_layers", [(False, True), (True, True), (False, False)])
def test_guided_logits_equal_the_full_batch_forward(mask_text_padding, scan_layers):
    """Also with the layer loop (``scan_layers=False``) in the logits_fn, against the scanned forward."""
    cfg = MagnetConfig(card=64, dim=32, num_heads=2, num_layers=3, mask_text_padding=mask_text_padding)
    lm = MagnetLM(cfg, rngs=nnx.Rngs(1))
    looped = MagnetLM(cfg.replace(scan_layers=scan_layers), rngs=nnx.Rngs(1))
    rs = np.random.RandomState(0)
    hidden = jnp.asarray(rs.randn(B, S, E).astype(np.float32))
    mask = jnp.asarray(np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], np.int32))
    codes = jnp.asarray(np.where(rs.rand(B, K, T) < 0.4, 64, rs.randint(0, 64, (B, K, T))), jnp.int32)
    graphdef, state = nnx.split(looped)
    fn = cfg_logits_fn(graphdef, state, hidden, mask)
    for stage, coef in [(0, 7.5), (1, 3.0), (3, 1.0)]:
        got = np.asarray(fn(codes, stage, jnp.float32(coef)))
        want = np.asarray(_plain_cfg(lm, codes, hidden, mask, stage, jnp.float32(coef)))
        assert got.shape == (B, T, 64)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"stage {stage}")
        np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    # without text: the null rows alone == stage_logits on a zero condition
    null = cfg_logits_fn(graphdef, state, None, None)
    got = np.asarray(null(codes, 2, jnp.float32(5.0)))
    want = np.asarray(lm.stage_logits(codes, None, None, 2, cond=jnp.zeros((B, 1, cfg.dim))))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scan_layers", [True, False])
def test_jitted_inside_a_loop(scan_layers):
    """The loop body is its own trace level: the logits_fn must work under jit + fori_loop."""
    lm = MagnetLM(MagnetConfig(card=64, dim=32, num_heads=2, num_layers=2, scan_layers=scan_layers),
                  rngs=nnx.Rngs(2))
    hidden = jnp.ones((1, S, E), jnp.float32)
    mask = jnp.ones((1, S), jnp.int32)
    codes = jnp.zeros((1, K, 9), jnp.int32)

    @jax.jit
    def run(state):
        fn = cfg_logits_fn(graphdef, state, hidden, mask)
        return jax.lax.fori_loop(0, 2, lambda i, acc: acc + fn(codes, 1, jnp.float32(2.0)), jnp.zeros((1, 9, 64)))

    graphdef, state = nnx.split(lm)
    np.testing.assert_allclose(np.asarray(run(state)), 2 * np.asarray(_plain_cfg(lm, codes, hidden, mask, 1, 2.0))[:1],
                               rtol=1e-5, atol=1e-5)
