"""Optimizer and learning-rate schedules of the reference recipes.

* music (``magnet_32khz.yaml``): AdamW betas (0.9, 0.95), weight decay 0.1 on all parameters,
  clip at global norm 1.0, linear warmup then cosine to ``lr_min_ratio`` (audiocraft
  ``CosineLRScheduler``). The released small models used D-Adaptation Adam; we use AdamW, as
  the released medium models did.
* audio (``audio_magnet_16khz.yaml``): AdamW 5e-4, inverse-sqrt with linear warmup from 0.
"""
from __future__ import annotations

import jax.numpy as jnp
import optax


def make_schedule(cfg) -> optax.Schedule:
    base, warmup, total = float(cfg.learning_rate), int(cfg.warmup_steps), int(cfg.total_steps)
    if cfg.schedule == "cosine":
        def sched(step):
            step = jnp.asarray(step, jnp.float32)
            warm = base * step / max(warmup, 1)
            progress = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
            lr_min = base * cfg.lr_min_ratio
            cos = lr_min + (base - lr_min) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
            return jnp.where(step < warmup, warm, cos)
        return sched
    if cfg.schedule == "inverse_sqrt":
        def sched(step):
            step = jnp.asarray(step, jnp.float32)
            warm = base * step / max(warmup, 1)
            decay = base * jnp.sqrt(float(max(warmup, 1))) * jnp.reciprocal(jnp.sqrt(jnp.maximum(step, 1.0)))
            return jnp.where(step < warmup, warm, decay)
        return sched
    if cfg.schedule == "constant":
        return optax.constant_schedule(base)
    raise ValueError(f"unknown schedule {cfg.schedule!r} (cosine, inverse_sqrt, constant)")


def make_optimizer(cfg) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(float(cfg.max_grad_norm)) if cfg.max_grad_norm > 0 else optax.identity(),
        optax.adamw(make_schedule(cfg), b1=float(cfg.b1), b2=float(cfg.b2), eps=float(cfg.eps),
                    weight_decay=float(cfg.weight_decay)))
