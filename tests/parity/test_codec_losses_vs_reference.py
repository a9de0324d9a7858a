"""Codec training losses vs audiocraft 1.3.0 (the real torch modules, same random inputs / weights):
msspec, mel, L1, SI-SNR, the MS-STFT discriminator (logits + feature maps), the hinge adversarial and
feature-matching losses, and the loss Balancer (combined gradient and effective loss over steps)."""
import numpy as np
import pytest

import tests.reference.shim  # noqa: F401  (before audiocraft)
from tests.reference.torchaudio_py import load as load_torchaudio

load_torchaudio()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from audiocraft import adversarial as ac_adv  # noqa: E402
from audiocraft import losses as ac_losses  # noqa: E402
from flax import nnx  # noqa: E402

from magnet_jax.codec_training import adversarial, balancer, losses  # noqa: E402
from magnet_jax.codec_training.discriminator import MultiScaleSTFTDiscriminator  # noqa: E402

RTOL = 1e-4


def _pair(B, C, N, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(N) / 16000
    y = (0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000, (B, C, 1)) * t) + 0.05 * rng.standard_normal((B, C, N)))
    x = y + 0.1 * rng.standard_normal((B, C, N))
    return x.astype(np.float32), y.astype(np.float32)


def _close(ours, ref, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(np.asarray(ours), ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref,
                               rtol=rtol, atol=atol)


MSSPEC_SOLVER = dict(range_start=6, range_end=11, n_mels=64, f_min=64.0, f_max=None, normalized=True, alphas=False,
                     floor_level=1e-5)


@pytest.mark.parametrize("sr,C,kw", [(16000, 1, MSSPEC_SOLVER), (32000, 2, MSSPEC_SOLVER), (16000, 1, {})])
def test_msspec_value_and_gradient(sr, C, kw):
    x, y = _pair(2, C, 4000 + 37, seed=sr + C)
    ref = ac_losses.MultiScaleMelSpectrogramLoss(sr, **kw).double()   # float64: see the balancer test
    xt = torch.from_numpy(x).double().requires_grad_(True)
    lt = ref(xt, torch.from_numpy(y).double())
    lt.backward()
    fn = lambda a: losses.msspec_loss(a, jnp.asarray(y), sample_rate=sr, **kw)  # noqa: E731
    val, grad = jax.jit(jax.value_and_grad(fn))(jnp.asarray(x))
    _close(val, lt)
    g_ref = xt.grad.numpy()
    np.testing.assert_allclose(np.asarray(grad), g_ref, rtol=1e-3, atol=1e-4 * np.abs(g_ref).max())


def test_mel_l1_and_sisnr():
    sr = 16000
    x, y = _pair(3, 1, 2 * sr + 11, seed=5)
    mel_kw = dict(n_fft=1024, hop_length=256, n_mels=64, f_min=64.0, f_max=None, normalized=False, floor_level=1e-5)
    ref_mel = ac_losses.MelSpectrogramL1Loss(sample_rate=sr, win_length=1024, **mel_kw)
    _close(losses.mel_loss(jnp.asarray(x), jnp.asarray(y), sample_rate=sr, **mel_kw),
           ref_mel(torch.from_numpy(x), torch.from_numpy(y)))
    _close(losses.l1_loss(jnp.asarray(x), jnp.asarray(y)), torch.nn.L1Loss()(torch.from_numpy(x), torch.from_numpy(y)))
    for segment in (5.0, 0.5):   # (audiocraft's segment=None path asserts on a wrong axis)
        ref = ac_losses.SISNR(sample_rate=sr, segment=segment)
        _close(losses.sisnr(jnp.asarray(x), jnp.asarray(y), sample_rate=sr, segment=segment),
               -ref(torch.from_numpy(x), torch.from_numpy(y)))


# --------------------------------------------------------------------------- discriminator
MSSTFTD = dict(n_ffts=[1024, 2048, 512, 256, 128], hop_lengths=[256, 512, 128, 64, 32],
               win_lengths=[1024, 2048, 512, 256, 128])


def _torch_disc(filters, seed):
    torch.manual_seed(seed)
    ref = ac_adv.MultiScaleSTFTDiscriminator(filters=filters, in_channels=1, out_channels=1, norm="weight_norm",
                                             activation="LeakyReLU", activation_params={"negative_slope": 0.3},
                                             **MSSTFTD)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("weight_g"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return ref


def _copy_disc(ref, filters):
    ours = MultiScaleSTFTDiscriminator(filters, negative_slope=0.3, rngs=nnx.Rngs(0), **MSSTFTD)
    hwio = lambda t: jnp.asarray(t.detach().numpy().transpose(2, 3, 1, 0))  # noqa: E731  OIHW -> HWIO
    for d_ref, d in zip(ref.discriminators, ours.discriminators):
        for c_ref, c in zip(list(d_ref.convs) + [d_ref.conv_post], list(d.convs) + [d.conv_post]):
            conv = c_ref.conv
            if c.weight_norm:
                c.v[...] = hwio(conv.weight_v)
                c.g[...] = jnp.asarray(conv.weight_g.detach().numpy().reshape(-1))
            else:
                c.w[...] = hwio(conv.weight)
            c.bias[...] = jnp.asarray(conv.bias.detach().numpy())
    return ours


def test_msstft_discriminator_logits_and_feature_maps():
    filters = 8
    ref = _torch_disc(filters, seed=0)
    ours = _copy_disc(ref, filters)
    x, _ = _pair(2, 1, 4000 + 5, seed=1)
    with torch.no_grad():
        logits_ref, fmaps_ref = ref(torch.from_numpy(x))
    logits, fmaps = nnx.jit(lambda m, a: m(a))(ours, jnp.asarray(x))
    assert len(logits) == 5 and all(len(f) == 5 for f in fmaps)
    nchw = lambda a: np.asarray(a).transpose(0, 3, 1, 2)  # noqa: E731  ours NHWC
    for lo, lr in zip(logits, logits_ref):
        np.testing.assert_allclose(nchw(lo), lr.numpy(), rtol=RTOL, atol=1e-5 * float(lr.abs().max()))
    for fo, fr in zip(fmaps, fmaps_ref):
        for a, b in zip(fo, fr):
            np.testing.assert_allclose(nchw(a), b.numpy(), rtol=RTOL, atol=1e-5 * float(b.abs().max()))


def test_adversarial_and_feature_matching_losses():
    filters = 8
    ref = _torch_disc(filters, seed=3)
    ours = _copy_disc(ref, filters)
    fake, real = _pair(2, 1, 4000, seed=2)
    feat = ac_adv.FeatureMatchingLoss(torch.nn.L1Loss(), normalize=True)
    adv = ac_adv.AdversarialLoss(ref, torch.optim.SGD(ref.parameters(), lr=0.0), loss=ac_adv.losses.hinge_loss,
                                 loss_real=ac_adv.losses.hinge_real_loss, loss_fake=ac_adv.losses.hinge_fake_loss,
                                 loss_feat=feat, normalize=True)
    d_ref = adv.train_adv(torch.from_numpy(fake), torch.from_numpy(real))   # lr 0: the weights stay
    adv_ref, feat_ref = adv(torch.from_numpy(fake), torch.from_numpy(real))
    # Gradients w.r.t. the generated audio (what the balancer sees). fp32 rounding through the discriminator moves
    # them by ~3e-4 of the max on either side (ours and the reference's alike; which elements move depends on the
    # CPU), so: (1) our float64 gradient must equal the float64 reference's (measured 6e-8 of the max: the STFT's
    # window and normalisation constants are fp32 numbers; a real deviation would be orders larger), and (2) our
    # fp32 error vs float64 must be of the size of the reference's own fp32 error, measured on this host.
    ref64 = _torch_disc(filters, seed=3).double()
    adv64 = ac_adv.AdversarialLoss(ref64, torch.optim.SGD(ref64.parameters(), lr=0.0),
                                   loss=ac_adv.losses.hinge_loss, loss_real=ac_adv.losses.hinge_real_loss,
                                   loss_fake=ac_adv.losses.hinge_fake_loss, loss_feat=feat, normalize=True)
    fake_t = torch.from_numpy(fake).double().requires_grad_(True)
    sum(adv64(fake_t, torch.from_numpy(real).double())).backward()
    g_ref64 = fake_t.grad.numpy()
    fake_32 = torch.from_numpy(fake).requires_grad_(True)
    sum(adv(fake_32, torch.from_numpy(real))).backward()
    g_ref32 = fake_32.grad.numpy().astype(np.float64)
    gen = nnx.jit(adversarial.generator_losses)
    a, f = gen(ours, jnp.asarray(fake), jnp.asarray(real))
    _close(a, adv_ref)
    _close(f, feat_ref)
    _close(nnx.jit(adversarial.discriminator_loss)(ours, jnp.asarray(fake), jnp.asarray(real)), d_ref)
    gd, state = nnx.split(ours)

    def total(st, y, r):
        return sum(adversarial.generator_losses(nnx.merge(gd, st), y, r))
    g32 = np.asarray(jax.jit(jax.grad(total, argnums=1))(state, jnp.asarray(fake), jnp.asarray(real)), np.float64)
    with jax.enable_x64(True):
        st64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                            state)
        g64 = np.asarray(jax.jit(jax.grad(total, argnums=1))(st64, jnp.asarray(fake, jnp.float64),
                                                             jnp.asarray(real, jnp.float64)))
    assert g64.dtype == np.float64
    top = np.abs(g_ref64).max()
    np.testing.assert_allclose(g64, g_ref64, rtol=0, atol=1e-6 * top)

    def l2(x):
        return float(np.sqrt(np.sum(x ** 2)))
    ours_err, ref_err = g32 - g64, g_ref32 - g_ref64
    assert l2(ours_err) <= 4 * l2(ref_err) + 1e-6 * l2(g64), (l2(ours_err), l2(ref_err))
    assert np.abs(ours_err).max() <= 4 * np.abs(ref_err).max() + 1e-6 * top
    assert l2(ours_err) < 1e-2 * l2(g64)


# --------------------------------------------------------------------------- balancer
@pytest.mark.parametrize("balance_grads", [True, False])
def test_balancer_matches_reference_over_steps(balance_grads):
    sr = 16000
    weights = {"l1": 0.1, "msspec": 2.0, "l2": 0.5}
    ref = ac_losses.Balancer(dict(weights), balance_grads=balance_grads, total_norm=1.0, ema_decay=0.999,
                             per_batch_item=True)
    # float64 reference: the msspec L1 has a kink wherever two mel bins tie, and the reference's fp32 rounding flips
    # some (on an AMD EPYC host 0.2 % of the samples moved by up to 1.6 % of their value; ours matched float64)
    ms = ac_losses.MultiScaleMelSpectrogramLoss(sr, **MSSPEC_SOLVER).double()
    state = balancer.init_state(weights)

    def loss_fn(y, target):
        return {"l1": losses.l1_loss(y, target), "msspec": losses.msspec_loss(y, target, sample_rate=sr,
                                                                               **MSSPEC_SOLVER),
                "l2": losses.mse_loss(y, target)}
    @jax.jit
    def step_fn(y, target, state):
        vals, grads = balancer.partial_grads(lambda a: loss_fn(a, target), y)
        out, eff, state, _ = balancer.balance(vals, grads, state, weights, balance_grads=balance_grads,
                                              total_norm=1.0, ema_decay=0.999, per_batch_item=True)
        return out, eff, state

    for step in range(3):
        y, target = _pair(2, 1, 3000, seed=10 + step)
        y = y * (1 + step)          # norms change between steps: the EMA matters
        yt = torch.from_numpy(y).double().requires_grad_(True)
        tt = torch.from_numpy(target).double()
        eff_ref = ref.backward({"l1": torch.nn.functional.l1_loss(yt, tt), "msspec": ms(yt, tt),
                                "l2": torch.nn.functional.mse_loss(yt, tt)}, yt)
        out, eff, state = step_fn(jnp.asarray(y), jnp.asarray(target), state)
        g_ref = yt.grad.numpy()
        np.testing.assert_allclose(np.asarray(out), g_ref, rtol=1e-3, atol=1e-4 * np.abs(g_ref).max())
        _close(eff, eff_ref, rtol=1e-3)
