"""The span-masking training objective: LUT vs the closed form, spans, inputs layout, loss, CFG dropout."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from magnet_jax.model import MagnetConfig, MagnetLM
from magnet_jax.objectives import magnet as masking


@pytest.mark.parametrize("T,L", [(500, 3), (1500, 3), (100, 3), (64, 5)])
def test_lut_equals_closed_form(T, L):
    lut = masking.span_lut(T, L)
    closed = [0.0] + [1 - math.comb(T - L, u) / math.comb(T, u) for u in range(1, T)]
    want = [int(np.searchsorted(closed, m / 100.0)) for m in range(101)]
    assert lut.tolist() == want
    assert lut[0] == 0 and np.all(np.diff(lut) >= 0)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.4, 0.6, 0.8, 0.95])
def test_masked_fraction_tracks_target(rate):
    T = 500
    m = masking.span_mask(jax.random.PRNGKey(0), jnp.full((512,), rate), T, 3)
    frac = float(m.mean())
    assert abs(frac - rate) < 0.015, (rate, frac)
    # spans: every masked run is at least span_len long (except when truncated at the end)
    row = np.asarray(m[0]).astype(int)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, row, 0])))[::2]
    assert runs[:-1].min() >= 3 if len(runs) > 1 else True


def test_span_mask_is_deterministic_and_at_least_one_start():
    a = masking.span_mask(jax.random.PRNGKey(3), jnp.zeros((4,)), 50, 3)
    b = masking.span_mask(jax.random.PRNGKey(3), jnp.zeros((4,)), 50, 3)
    assert np.array_equal(a, b) and np.all(np.asarray(a.sum(-1)) >= 1)


def test_span_mask_of_a_suffix_is_the_hybrid_form_of_the_same_mask():
    """One span mask for MAGNeT and Hybrid-MAGNeT: a suffix starting at frame 0 is the whole-sequence mask; a later
    start keeps the spans in the suffix and draws their number from the suffix length's LUT."""
    key, rate = jax.random.PRNGKey(5), jax.random.uniform(jax.random.PRNGKey(6), (64,))
    whole = masking.span_mask(key, rate, 40, 3)
    assert np.array_equal(whole, masking.span_mask(key, rate, 40, 3, first=jnp.zeros((64,), jnp.int32)))
    first = jnp.arange(64, dtype=jnp.int32) % 40
    suffix = np.asarray(masking.span_mask(key, rate, 40, 3, first=first))
    assert not (suffix & (np.arange(40)[None] < np.asarray(first)[:, None])).any() and suffix.sum(-1).min() >= 1
    table = masking.span_lut_table(40, 3)
    assert table.shape == (41, 101) and table[17].tolist() == masking.span_lut(17, 3).tolist()


def test_masked_inputs_layout():
    codes = jnp.arange(2 * 4 * 6).reshape(2, 4, 6) % 7
    span = jnp.zeros((2, 6), bool).at[:, 2:4].set(True)
    x = masking.masked_inputs(codes, 1, span, 99)
    assert np.array_equal(x[:, 0], codes[:, 0])
    assert np.array_equal(x[:, 1], jnp.where(span, 99, codes[:, 1]))
    assert np.all(np.asarray(x[:, 2:]) == 99)
    y = masking.masked_inputs(codes, jnp.array([0, 3]), span, 99)      # per-sample stages
    assert np.all(np.asarray(y[0, 1:]) == 99) and np.array_equal(y[1, :3], codes[1, :3])


CFG = MagnetConfig(dim=64, num_heads=4, num_layers=2, text_dim=16, segment_duration=0.6)


def _batch(B=4, T=30, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 2)
    codes = jax.random.randint(k[0], (B, 4, T), 0, CFG.card)
    hidden = jax.random.normal(k[1], (B, 5, 16))
    return codes, jnp.ones((B, T), bool), hidden, jnp.ones((B, 5), jnp.int32)


def test_loss_ignores_unmasked_and_padded_targets():
    lm = MagnetLM(CFG, rngs=nnx.Rngs(0))
    codes, pad, h, m = _batch()
    pad = pad.at[:, 25:].set(False)
    batch = masking.prepare_batch(codes, pad, m, jax.random.PRNGKey(1), num_codebooks=4, mask_id=CFG.mask_id, stage=2)
    w = np.asarray(batch["weights"])
    assert 0 < w.sum() < w.size and not w[:, 25:].any()
    # inputs: codebooks < 2 visible, 2 span-masked, > 2 fully masked
    assert np.all(np.asarray(batch["inputs"][:, 3]) == CFG.mask_id)
    loss, n = masking.loss_from_batch(lm, batch, h)
    assert float(n) == w.sum()
    t = batch["targets"]
    changed = dict(batch, targets=jnp.where(batch["weights"], t, (t + 5) % CFG.card))
    assert float(masking.loss_from_batch(lm, changed, h)[0]) == pytest.approx(float(loss), abs=1e-6)
    i, j = np.argwhere(w)[0]
    moved = dict(batch, targets=t.at[i, j].set((t[i, j] + 1) % CFG.card))
    assert abs(float(masking.loss_from_batch(lm, moved, h)[0]) - float(loss)) > 1e-6
    # the public loss is the same composition
    full, aux = masking.magnet_loss(lm, codes, pad, h, m, jax.random.PRNGKey(1), stage=2)
    assert float(full) == pytest.approx(float(loss), abs=1e-6) and float(aux["num_tokens"]) == w.sum()


def test_stage_weights_set_how_often_each_stage_is_drawn():
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    draw = jax.jit(jax.vmap(lambda k: masking.sample_stage(k, 4, 4, False, (0.7, 0.1, 0.1, 0.1))))
    freq = np.bincount(np.asarray(draw(keys)), minlength=4) / len(keys)
    np.testing.assert_allclose(freq, [0.7, 0.1, 0.1, 0.1], atol=0.06)
    uniform = np.bincount(np.asarray(jax.vmap(lambda k: masking.sample_stage(k, 4, 4))(keys)), minlength=4)
    assert uniform.min() > 70                                       # () keeps the reference's uniform draw
    only_last = masking.sample_stage(keys[0], 6, 4, True, (0, 0, 0, 2))
    assert only_last.shape == (6,) and (np.asarray(only_last) == 3).all()
    batch = masking.prepare_batch(jnp.zeros((2, 4, 30), jnp.int32), jnp.ones((2, 30), bool), jnp.ones((2, 5)),
                                  keys[1], num_codebooks=4, mask_id=1024, stage_weights=(0, 1, 0, 0))
    assert int(batch["stage"]) == 1


def test_cfg_dropout_batch_and_sample():
    m = jnp.ones((64, 5), jnp.int32)
    dropped = [int(masking.cfg_dropout(jax.random.PRNGKey(i), m, 0.3).sum() == 0) for i in range(200)]
    assert 0.2 < np.mean(dropped) < 0.4                                 # whole batch at once
    per = masking.cfg_dropout(jax.random.PRNGKey(0), m, 0.5, per_sample=True)
    rows = np.asarray(per.sum(-1))
    assert set(rows.tolist()) == {0, 5}


def test_tiny_model_overfits_fixed_tokens():
    lm = MagnetLM(CFG, rngs=nnx.Rngs(0))
    codes, pad, h, m = _batch(B=4, T=30, seed=4)
    opt = nnx.Optimizer(lm, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(lm, opt, key):
        def f(model):
            return masking.magnet_loss(model, codes, pad, h, m, key, cfg_dropout_p=0.0)[0]
        loss, g = nnx.value_and_grad(f)(lm)
        opt.update(lm, g)
        return loss

    losses = [float(step(lm, opt, jax.random.PRNGKey(i))) for i in range(300)]
    final = np.mean([float(masking.magnet_loss(lm, codes, pad, h, m, jax.random.PRNGKey(10_000 + i))[0])
                     for i in range(8)])
    assert losses[0] > 7.0 and final < 1.0, (losses[0], final)          # log(2048) = 7.62
