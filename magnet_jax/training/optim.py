"""Optimizer and learning-rate schedules of the reference recipes.

* music (``magnet_32khz.yaml``): AdamW betas (0.9, 0.95), weight decay 0.1 on all parameters,
  clip at global norm 1.0, linear warmup then cosine to ``lr_min_ratio`` (audiocraft
  ``CosineLRScheduler``). The released small models used D-Adaptation Adam; we use AdamW, as
  the released medium models did.
* audio (``audio_magnet_16khz.yaml``): AdamW 5e-4, inverse-sqrt with linear warmup from 0.

The schedule is evaluated at optax's own update count, which does not advance on skipped
(non-finite) steps: the applied learning rate is ``schedule(step - skipped)``.

``finite_update_bound`` is the train step's cheap proof that an AdamW update of finite gradients is finite
(see its docstring); without it the step checks the norm of the updates, a second pass over every parameter.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from magnet_jax.training.config import OptimConfig


def make_schedule(o: OptimConfig) -> optax.Schedule:
    base, warmup, total = float(o.learning_rate), int(o.warmup_steps), int(o.total_steps)
    if o.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, base, warmup, max(total, warmup + 1),
                                                  end_value=base * float(o.lr_min_ratio))
    if o.schedule == "inverse_sqrt":
        # base * sqrt(warmup / step) after the warmup (join_schedules hands the second one step - warmup)
        w = float(max(warmup, 1))
        decay = lambda s: base * jnp.sqrt(w) * jnp.reciprocal(jnp.sqrt(jnp.asarray(s, jnp.float32) + w))  # noqa: E731
        return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), decay], [warmup])
    if o.schedule == "constant":
        return optax.constant_schedule(base)
    raise ValueError(f"unknown schedule {o.schedule!r} (cosine, inverse_sqrt, constant)")


def make_optimizer(o: OptimConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(float(o.max_grad_norm)) if o.max_grad_norm > 0 else optax.identity(),
        optax.adamw(make_schedule(o), b1=float(o.b1), b2=float(o.b2), eps=float(o.eps),
                    weight_decay=float(o.weight_decay)))


def finite_update_bound(o: OptimConfig):
    """A sufficient condition, from scalars, for this optimizer's step of finite gradients to be finite.

    With clipping at global norm ``C`` every clipped gradient element is at most ``C`` in magnitude, so are
    Adam's bias-corrected first moment and the square root of its second, and the denominator is at least
    ``eps``: each update element is at most ``lr (C / eps + wd |p|)`` (optax's AdamW, ``eps_root = 0``). The
    returned ``ok(lr, params)`` is True when ``max |p|`` plus that bound stays below a quarter of float32's
    largest value: then the update and the new params are finite whenever the gradients are (and by induction
    the moments stay finite). It is False only where a step could overflow (``lr`` near ``1e29 eps / C``).
    Returns None where no such bound exists (no clipping, or ``eps = 0`` where ``0 / 0`` is possible): the step
    then checks the updates themselves.
    """
    clip, eps, wd = float(o.max_grad_norm), float(o.eps), float(o.weight_decay)
    if clip <= 0 or eps <= 0:
        return None
    limit = float(jnp.finfo(jnp.float32).max) / 4

    def ok(lr, params):
        leaves = [x for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
        pmax = jnp.max(jnp.stack([jnp.max(jnp.abs(x)).astype(jnp.float32) for x in leaves]))
        lr = jnp.asarray(lr, jnp.float32)
        return jnp.isfinite(pmax) & (pmax + lr * (clip / eps + wd * pmax) < limit)
    return ok
