"""Optimizer and learning-rate schedules of the reference recipes.

* music (``magnet_32khz.yaml``): AdamW betas (0.9, 0.95), weight decay 0.1 on all parameters,
  clip at global norm 1.0, linear warmup then cosine to ``lr_min_ratio`` (audiocraft
  ``CosineLRScheduler``). The released small models used D-Adaptation Adam; we use AdamW, as
  the released medium models did.
* audio (``audio_magnet_16khz.yaml``): AdamW 5e-4, inverse-sqrt with linear warmup from 0.

The schedule is evaluated at optax's own update count, which does not advance on skipped
(non-finite) steps: the applied learning rate is ``schedule(step - skipped)``.
"""
from __future__ import annotations

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
