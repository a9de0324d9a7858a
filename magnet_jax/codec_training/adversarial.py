"""Adversarial losses of audiocraft's ``AdversarialLoss`` (``adv_loss: hinge``, ``feat_loss: l1``,
``normalize: true``).

* generator: ``adv = sum_s hinge_loss(logits_fake_s) / S`` with ``hinge_loss(x) = -mean(x)``;
  ``feat = sum_s FeatureMatchingLoss(fmaps_fake_s, fmaps_real_s) / S``, where the feature matching
  loss is the mean over a scale's feature maps of ``L1(fake, real)``;
* discriminator: ``sum_s [hinge_fake(logits(fake)_s) + hinge_real(logits(real)_s)] / S`` with
  ``hinge_real(x) = -mean(min(x - 1, 0))``, ``hinge_fake(x) = -mean(min(-x - 1, 0))``; the fake
  audio is detached.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def hinge_loss(x):
    return -jnp.mean(x)


def hinge_real_loss(x):
    return -jnp.mean(jnp.minimum(x - 1.0, 0.0))


def hinge_fake_loss(x):
    return -jnp.mean(jnp.minimum(-x - 1.0, 0.0))


def feature_matching_loss(fmap_fake, fmap_real):
    """audiocraft ``FeatureMatchingLoss(L1Loss(), normalize=True)`` for one sub-discriminator."""
    if len(fmap_fake) != len(fmap_real) or not fmap_fake:
        raise ValueError("feature map lists must be non-empty and of equal length")
    total = 0.0
    for a, b in zip(fmap_fake, fmap_real):
        total = total + jnp.mean(jnp.abs(a - b))
    return total / len(fmap_fake)


def _both(disc, fake, real):
    """One discriminator pass over ``[fake; real]`` (same result as two passes, one program)."""
    B = fake.shape[0]
    logits, fmaps = disc(jnp.concatenate([fake, real], axis=0))
    split = lambda xs: ([x[:B] for x in xs], [x[B:] for x in xs])  # noqa: E731
    lf, lr = split(logits)
    ff, fr = zip(*[split(f) for f in fmaps])
    return lf, list(ff), lr, list(fr)


def generator_losses(disc, fake, real):
    """``(adv, feat)`` for the generator; gradients flow into ``fake`` only."""
    logits_fake, fmaps_fake, _, fmaps_real = _both(disc, fake, jax.lax.stop_gradient(real))
    fmaps_real = jax.lax.stop_gradient(fmaps_real)
    n = len(logits_fake)
    adv = sum(hinge_loss(lf) for lf in logits_fake) / n
    feat = sum(feature_matching_loss(ff, fr) for ff, fr in zip(fmaps_fake, fmaps_real)) / n
    return adv, feat


def discriminator_loss(disc, fake, real):
    """The discriminator's hinge loss on detached ``fake`` and ``real`` (``AdversarialLoss.train_adv``)."""
    logits_fake, _, logits_real, _ = _both(disc, jax.lax.stop_gradient(fake), jax.lax.stop_gradient(real))
    n = len(logits_fake)
    return sum(hinge_fake_loss(f) + hinge_real_loss(r) for f, r in zip(logits_fake, logits_real)) / n
