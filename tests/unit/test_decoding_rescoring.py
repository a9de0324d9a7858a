"""Rescoring in decode_loop with a fake MAGNeT and a stub rescorer: the re-mask set follows Eq. 5 exactly."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magnet_jax.decoding import GenerationConfig, decode_loop, stage_schedule

CARD, MASK, T = 16, 16, 12
Q = np.linspace(0.9, 0.35, T).astype(np.float32)                 # MAGNeT's prob of its (greedy) token at t
TOKENS = (np.arange(T) * 5) % CARD                               # the token MAGNeT picks at t
PREFERRED = np.where(np.arange(T) >= 8, TOKENS, (TOKENS + 1) % CARD)   # the rescorer likes t >= 8 only
P_LIKE, P_DISLIKE = 0.95, 0.01


def _magnet_logits(codes, stage, coef):
    del codes, stage, coef
    probs = np.full((T, CARD), 0.0, np.float32)
    probs += ((1 - Q) / (CARD - 1))[:, None]
    probs[np.arange(T), TOKENS] = Q
    return jnp.log(jnp.asarray(probs))[None]                        # [1, T, card]


def _stub_rescorer(codes, stage):
    """Probability P_LIKE of the preferred token, P_DISLIKE of anything else (reads the sampled codes)."""
    return jnp.where(codes[:, stage] == jnp.asarray(PREFERRED)[None], P_LIKE, P_DISLIKE).astype(jnp.float32)


def _config(**kw):
    return GenerationConfig(decoding_steps=(3,), use_sampling=False, temp=1.0, anneal_temp=False, **kw)


def _remasked_at_step1(config, span_len, rescore_fn):
    known = jnp.zeros((1, 1, T), jnp.int32)
    keep = jnp.zeros((1, T), bool)
    run = jax.jit(lambda k, kp, r: decode_loop(_magnet_logits, config, k, kp, r, mask_id=MASK, span_len=span_len,
                                               trace=True, rescore_fn=rescore_fn))
    codes, tr = run(known, keep, jax.random.key(0))
    return np.asarray(tr.seq_in[1, 0]) == MASK, np.asarray(codes), jax.tree.map(np.asarray, tr.to_dict())


def _expected(w_magnet, span_len, scoring):
    """By hand: mix per token (Eq. 5), then the span score, then the top-``num_masked`` units re-masked."""
    p_r = np.where(TOKENS == PREFERRED, P_LIKE, P_DISLIKE)
    p = w_magnet * Q + (1 - w_magnet) * p_r if w_magnet is not None else Q
    n_units = T // span_len
    mask_p = stage_schedule(3, _config())["mask_p"][1]
    nm = max(int(np.floor(np.float32(mask_p) * np.float32(n_units))), 1)
    if span_len == 1:
        score = -np.log(p)
    else:
        chunks = p.reshape(n_units, span_len)
        score = 1 - chunks.max(-1) if scoring == "max" else (-np.log(chunks)).sum(-1)
    units = np.argsort(-score, kind="stable")[:nm]
    sel = np.zeros(n_units, bool)
    sel[units] = True
    return np.repeat(sel, span_len)


@pytest.mark.parametrize("span_len,scoring", [(1, "max"), (3, "max"), (3, "prod")])
def test_stub_rescorer_changes_the_remask_set_as_eq5(span_len, scoring):
    w = 0.3
    plain, _, _ = _remasked_at_step1(_config(span_scoring=scoring), span_len, None)
    rescored, _, _ = _remasked_at_step1(_config(span_scoring=scoring, rescorer_weight=w), span_len, _stub_rescorer)
    np.testing.assert_array_equal(plain, _expected(None, span_len, scoring))
    np.testing.assert_array_equal(rescored, _expected(w, span_len, scoring))
    assert (plain != rescored).any()                  # the rescorer moved the ranking


def test_fig4_side_puts_w_on_the_rescorer():
    eq5, _, _ = _remasked_at_step1(_config(rescorer_weight=0.3), 1, _stub_rescorer)
    fig4, _, _ = _remasked_at_step1(_config(rescorer_weight=0.7, rescorer_weight_on="rescorer"), 1, _stub_rescorer)
    np.testing.assert_array_equal(fig4, eq5)
    np.testing.assert_array_equal(fig4, _expected(0.3, 1, "max"))


@pytest.mark.parametrize("kw", [dict(rescorer_weight=1.0), dict(rescorer_weight=0.0, rescorer_weight_on="rescorer"),
                                dict()])
def test_magnet_weight_one_is_plain_decoding_bitwise(kw):
    _, plain_codes, plain_tr = _remasked_at_step1(_config(), 3, None)
    _, codes, tr = _remasked_at_step1(_config(**kw), 3, _stub_rescorer)
    np.testing.assert_array_equal(codes, plain_codes)
    for k in plain_tr:
        np.testing.assert_array_equal(tr[k], plain_tr[k])


def test_config_weights_and_checks():
    assert GenerationConfig().rescorer_weight is None and not GenerationConfig().rescoring
    assert GenerationConfig(rescorer_weight=0.8).magnet_weight == 0.8
    assert GenerationConfig(rescorer_weight=0.8, rescorer_weight_on="rescorer").magnet_weight == pytest.approx(0.2)
    assert not GenerationConfig(rescorer_weight=1.0).rescoring
    assert GenerationConfig.from_dict(GenerationConfig(rescorer_weight=0.5).to_dict()).rescorer_weight == 0.5
    for bad in (dict(rescorer_weight=1.5), dict(rescorer_weight=float("nan")), dict(rescorer_weight_on="both"),
                dict(rescorer_cfg_coef="3")):
        with pytest.raises(ValueError, match="rescorer"):
            GenerationConfig(**bad)
