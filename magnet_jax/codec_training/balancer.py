"""audiocraft's loss ``Balancer`` as a pure function of an explicit state.

Given the model output ``y`` and losses ``l_i(y)``, the gradient sent back into the model is

    G = sum_i  w_i / sum_j(w_j) * total_norm / (epsilon + avg(||g_i||)) * g_i,   g_i = d l_i / d y

with ``||g_i||`` the L2 norm per batch item averaged over the batch (``per_batch_item``) and ``avg``
flashy's bias-corrected EMA (``total = beta * total + ||g||``, ``fix = beta * fix + 1``, ``avg =
total / fix``; ``beta = ema_decay``). With ``balance_grads=False``: ``G = sum_i w_i g_i``. The
effective loss reported is ``sum_i scale_i * l_i``. Norms are computed over the global batch,
which equals audiocraft's average over workers of the per-worker means.
"""
from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp


def init_state(names) -> dict:
    """EMA accumulators for the losses ``names`` (all zero: the first update sets the average)."""
    return {"total": {k: jnp.zeros((), jnp.float32) for k in sorted(names)}, "fix": jnp.zeros((), jnp.float32)}


def partial_grads(loss_fn: Callable[[jax.Array], Mapping[str, jax.Array]], y: jax.Array):
    """``(losses, {name: d loss / d y})``: one forward of ``loss_fn``, one backward per loss
    (audiocraft's ``autograd.grad(loss, [input], retain_graph=True)``)."""
    losses, vjp = jax.vjp(loss_fn, y)
    grads = {}
    for name in losses:
        cot = {k: jnp.ones_like(v) if k == name else jnp.zeros_like(v) for k, v in losses.items()}
        grads[name], = vjp(cot)
    return losses, grads


def balance(losses: Mapping[str, jax.Array], grads: Mapping[str, jax.Array], state: dict, weights: Mapping[str, float],
            *, balance_grads: bool = True, total_norm: float = 1.0, ema_decay: float = 0.999,
            per_batch_item: bool = True, epsilon: float = 1e-12):
    """``(out_grad, effective_loss, new_state, metrics)``; ``metrics`` has ``ratio_<name>``, the
    share of the (EMA) gradient norm of each loss (audiocraft's ``monitor``)."""
    total_norm = total_norm or 1.0
    beta = ema_decay or 1.0
    norms = {}
    for name, g in grads.items():
        g = jax.lax.stop_gradient(g)
        if per_batch_item:
            norms[name] = jnp.mean(jnp.sqrt(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1)))
        else:
            norms[name] = jnp.sqrt(jnp.sum(jnp.square(g)))
    if set(norms) != set(state["total"]):
        raise ValueError(f"balancer state holds {sorted(state['total'])}, losses are {sorted(norms)}")
    total_acc = {k: state["total"][k] * beta + n for k, n in norms.items()}
    fix = state["fix"] * beta + 1.0
    avg = {k: total_acc[k] / fix for k in norms}
    total = sum(avg.values())
    metrics = {f"ratio_{k}": v / total for k, v in avg.items()}
    total_weights = sum(float(weights[k]) for k in avg)
    if not total_weights > 0:
        raise ValueError(f"balancer weights {dict(weights)} must sum to a positive number")
    out = None
    effective = jnp.zeros((), jnp.float32)
    for name in sorted(avg):
        if balance_grads:
            scale = float(weights[name]) / total_weights * total_norm / (epsilon + avg[name])
        else:
            scale = float(weights[name])
        term = scale * grads[name]
        out = term if out is None else out + term
        effective = effective + scale * jax.lax.stop_gradient(losses[name])
    new_state = {"total": {k: total_acc[k] for k in sorted(total_acc)}, "fix": fix}
    return out, effective, new_state, metrics
