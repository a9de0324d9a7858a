"""Codec training pieces without torch: the balancer's combined gradient against its formula, the
EMA of the generator, hinge losses, STFT framing, the mel filterbank, SI-SNR of known signals."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magnet_jax.codec_training import adversarial, balancer, losses
from magnet_jax.codec_training.state import ema_update


def _formula(grads, weights, norms_hist, beta, total_norm=1.0, eps=1e-12):
    """G = sum_i w_i / sum(w) * total_norm / (eps + avg_i) * g_i, avg = bias-corrected EMA of norms."""
    out = 0.0
    tw = sum(weights.values())
    for k, g in grads.items():
        hist = norms_hist[k]
        num = sum(beta ** (len(hist) - 1 - j) * n for j, n in enumerate(hist))
        den = sum(beta ** (len(hist) - 1 - j) for j in range(len(hist)))
        out = out + weights[k] / tw * total_norm / (eps + num / den) * g
    return out


def test_balancer_combined_gradient_matches_formula_over_steps():
    rng = np.random.default_rng(0)
    weights = {"a": 1.0, "b": 3.0}
    state = balancer.init_state(weights)
    hist = {"a": [], "b": []}
    beta = 0.9
    for step in range(4):
        grads = {k: jnp.asarray(rng.standard_normal((3, 1, 50)) * (1 + step) * (10 if k == "b" else 1), jnp.float32)
                 for k in weights}
        for k, g in grads.items():   # per-item L2 norm, mean over the batch
            hist[k].append(float(np.mean(np.sqrt(np.sum(np.asarray(g).reshape(3, -1) ** 2, 1)))))
        vals = {k: jnp.float32(step + 1.0) for k in weights}
        out, eff, state, metrics = balancer.balance(vals, grads, state, weights, ema_decay=beta)
        want = _formula(grads, weights, hist, beta)
        np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-5, atol=1e-6 * float(jnp.abs(want).max()))
        avg = {k: float(state["total"][k] / state["fix"]) for k in weights}
        np.testing.assert_allclose(float(eff), sum(weights[k] / 4.0 / avg[k] * (step + 1) for k in weights), rtol=1e-5)
        assert abs(float(metrics["ratio_a"]) + float(metrics["ratio_b"]) - 1) < 1e-6
    # the balanced gradient splits its norm by the weights (b gets 3 / 4 of the total norm 1 on average)
    na = float(jnp.mean(jnp.linalg.norm((want - 0).reshape(3, -1), axis=1)))
    assert 0.3 < na < 1.5


def test_balancer_without_balancing_is_the_weighted_sum():
    g = {"a": jnp.ones((2, 1, 4)), "b": 2 * jnp.ones((2, 1, 4))}
    out, eff, _, _ = balancer.balance({"a": jnp.float32(1.0), "b": jnp.float32(2.0)}, g, balancer.init_state(g),
                                      {"a": 0.5, "b": 2.0}, balance_grads=False)
    np.testing.assert_allclose(np.asarray(out), 0.5 * 1 + 2.0 * 2)
    assert float(eff) == pytest.approx(0.5 * 1 + 2.0 * 2)


def test_partial_grads_are_gradients_wrt_the_output():
    y = jnp.linspace(-1.0, 1.0, 12).reshape(2, 1, 6)
    vals, grads = balancer.partial_grads(lambda a: {"sq": jnp.sum(a ** 2), "lin": jnp.sum(3 * a)}, y)
    np.testing.assert_allclose(np.asarray(grads["sq"]), 2 * np.asarray(y), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grads["lin"]), 3.0)
    assert float(vals["lin"]) == pytest.approx(0.0, abs=1e-5)


def test_unbiased_ema_equals_weighted_average():
    decay = 0.9
    xs = [1.0, 5.0, -2.0]
    ema, count = {"p": jnp.float32(123.0)}, jnp.float32(0.0)
    for x in xs:
        ema, count = ema_update(ema, count, {"p": jnp.float32(x)}, decay)
    w = np.array([decay ** 2, decay, 1.0])
    assert float(ema["p"]) == pytest.approx(float(np.dot(w, xs) / w.sum()), rel=1e-6)


def test_hinge_losses():
    x = jnp.array([-2.0, 0.0, 0.5, 3.0])
    assert float(adversarial.hinge_loss(x)) == pytest.approx(-0.375)
    assert float(adversarial.hinge_real_loss(x)) == pytest.approx((3 + 1 + 0.5 + 0) / 4)
    assert float(adversarial.hinge_fake_loss(x)) == pytest.approx((0 + 1 + 1.5 + 4) / 4)
    f = [jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 3, 1, 1))]
    assert float(adversarial.feature_matching_loss(f, [jnp.zeros((1, 2, 2, 1)), jnp.ones((1, 3, 1, 1))])) == 1.0


def test_framing_and_mel_filterbank():
    x = jnp.arange(20.0)
    fr = losses.frame(x, 8, 2)
    idx = np.arange(7)[:, None] * 2 + np.arange(8)
    np.testing.assert_array_equal(np.asarray(fr), np.arange(20.0)[idx])
    np.testing.assert_array_equal(np.asarray(losses.frame(x, 6, 4)), np.arange(20.0)[np.arange(4)[:, None] * 4
                                                                                    + np.arange(6)])
    fb = losses.mel_filterbank(512, 40, 16000, f_min=64.0)
    assert fb.shape == (257, 40) and fb.min() >= 0 and fb.max() <= 1.0
    peaks = fb.argmax(0)
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] > 200      # filters increase in frequency


def test_sisnr_of_scaled_and_noisy_signals():
    rng = np.random.default_rng(0)
    ref = jnp.asarray(rng.standard_normal((2, 1, 8000)), jnp.float32)
    assert float(losses.sisnr(0.5 * ref, ref, sample_rate=8000, segment=None)) > 60     # scale-invariant
    noisy = ref + 0.1 * jnp.asarray(rng.standard_normal((2, 1, 8000)), jnp.float32)
    assert float(losses.sisnr(noisy, ref, sample_rate=8000, segment=0.5)) == pytest.approx(20.0, abs=0.5)


def test_msspec_is_zero_for_identical_inputs_and_grows_with_noise():
    rng = np.random.default_rng(1)
    y = jnp.asarray(0.3 * np.sin(np.arange(4000) * 0.05)[None, None], jnp.float32)
    f = jax.jit(lambda a: losses.msspec_loss(a, y, sample_rate=8000, f_min=64.0, normalized=True, alphas=False))
    assert float(f(y)) < 1e-9
    small = float(f(y + 0.01 * rng.standard_normal(y.shape).astype(np.float32)))
    big = float(f(y + 0.1 * rng.standard_normal(y.shape).astype(np.float32)))
    assert 0 < small < big


def test_mrstft_resolves_partials_a_64_band_mel_blurs():
    """A note whose 8th partial moves by 14 Hz (1995 -> 2009 Hz, inside one mel band at 16 kHz): the linear
    multi-resolution loss weighs the move (against a gain change) 2.5x more than the 64-band multi-scale mel."""
    sr = 16000
    t = np.arange(sr) / sr

    def note(top):
        return sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate([249.4 * k for k in range(1, 8)] + [top], 1))
    a, b = (jnp.asarray(note(f)[None, None], jnp.float32) for f in (1995.0, 2009.0))
    assert float(losses.mrstft_loss(a, a)) == pytest.approx(0.0, abs=1e-5)
    mr = float(losses.mrstft_loss(a, b)) / float(losses.mrstft_loss(a, a * 0.5 + 1e-3))
    ms = float(losses.msspec_loss(a, b, sample_rate=sr, n_mels=64, normalized=True)) / float(
        losses.msspec_loss(a, a * 0.5 + 1e-3, sample_rate=sr, n_mels=64, normalized=True))
    assert mr > 2 * ms, (mr, ms)   # relative to a plain gain change, the partial's move weighs 2.5x more
