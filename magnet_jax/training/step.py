"""The sharded LM train / eval steps (pure functions, jitted over a Mesh), for any training objective.

One step: per-step key ``fold_in(seed_key, step)`` -> frozen T5 on the batch's tokens (or the batch's precomputed
``text_hidden``) -> the objective's ``prepare`` (``config.objective`` looked up in
:data:`magnet_jax.objectives.table.OBJECTIVES`: e.g. MAGNeT's stage, spans and CFG dropout, decided once for the
whole global batch) -> gradient of its loss, accumulated over ``grad_accum_steps`` micro-batches -> clip + AdamW ->
non-finite guard -> EMA of the params every ``ema_every`` steps. The state is donated; nothing syncs with the host.

LoRA (``lora``: a :class:`~magnet_jax.model.lora.LoRAConfig`): the state's params are the adapters, the base
parameters a frozen input of the step (its last argument, sharded by ``base_specs``, not donated); the model is the
base with the adapters attached (:func:`magnet_jax.model.lora.attach`), differentiated w.r.t. the adapters only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from magnet_jax.model.config import LMConfig
from magnet_jax.model.lora import LoRAConfig, attach
from magnet_jax.objectives.base import Objective
from magnet_jax.objectives.table import objective as objective_named
from magnet_jax.sharding import batch_shardings
from magnet_jax.training.config import StepConfig
from magnet_jax.training.state import TrainState, to_shardings


def _text_hidden(t5_graphdef, t5_params, batch):
    if "text_hidden" in batch:
        return batch["text_hidden"]
    t5 = nnx.merge(t5_graphdef, t5_params)
    return jax.lax.stop_gradient(t5(batch["text_ids"], batch["text_mask"]))


def _prepare(s: StepConfig, mcfg: LMConfig, batch, key, stage=None) -> dict:
    """The draws of ``s.objective`` for one global batch (``stage``: evaluate that codebook, no CFG dropout)."""
    return objective_named(s.objective).prepare(batch, key, model_config=mcfg, step_config=s, stage=stage)


def _model(graphdef, params, base, lora: LoRAConfig | None):
    """The LM of ``params`` (full fine-tuning), or of the frozen ``base`` with the adapters ``params`` attached."""
    if lora is None:
        return nnx.merge(graphdef, params)
    return attach(nnx.merge(graphdef, base), params, lora)


def _loss_sum(graphdef, params, prepared, hidden, objective: Objective, base=None, lora: LoRAConfig | None = None):
    loss, n = objective.loss(_model(graphdef, params, base, lora), prepared, hidden)
    return loss * n, n


def ema_update(ema, count, params, decay: float):
    """audiocraft ``ModuleDictEMA(unbias=True).step``: ``count = count * decay + 1``, ``w = 1 / count``,
    ``ema = (1 - w) ema + w params`` (the first update copies the params; the init has weight 0)."""
    count = count * decay + 1.0
    w = 1.0 / count
    return jax.tree.map(lambda e, p: (1.0 - w) * e + w * p, ema, params), count


def _accumulated_grads(grad_fn, params, prepared: dict, hidden, keys: tuple[str, ...], accum: int,
                       whole_batch_keys: bool):
    """``((loss_sum, num_tokens), grads)`` of ``grad_fn`` over ``accum`` micro-batches of ``prepared``: ``keys``
    (the objective's ``PER_SAMPLE_KEYS``) and ``hidden`` are cut along the batch; a scalar key goes whole to each.

    Token-weighted sums over micro-batches: accumulation equals one big batch (a global token mean; audiocraft's
    multi-GPU loss is a mean of per-rank token means, equal only on one GPU). ``whole_batch_keys``: the model
    masks the text keys past the *batch's* longest text (reference semantics, ``mask_text_padding=False``), so
    every micro-batch gets the whole batch's key mask (a row-independent mask is the same in any split).
    """
    if accum == 1:
        return grad_fn(params, prepared, hidden)
    B = hidden.shape[0]
    if B % accum:
        raise ValueError(f"batch {B} is not divisible by grad_accum_steps={accum}")
    split = {k: prepared[k] for k in keys if jnp.ndim(prepared[k])}
    shared = {k: prepared[k] for k in keys if not jnp.ndim(prepared[k])}
    if whole_batch_keys:
        tm = prepared["text_mask"]
        longest = jnp.max(jnp.sum((tm > 0).astype(jnp.int32), axis=-1))
        split["key_mask"] = jnp.broadcast_to(jnp.arange(tm.shape[-1]) < longest, tm.shape).astype(tm.dtype)
    micro = jax.tree.map(lambda x: x.reshape((accum, B // accum) + x.shape[1:]), (split, hidden))

    def body(carry, mb):
        pb, h = mb
        (ls, nn), g = grad_fn(params, {**shared, **pb}, h)
        acc_l, acc_n, acc_g = carry
        return (acc_l + ls, acc_n + nn, jax.tree.map(jnp.add, acc_g, g)), None
    zeros = jax.tree.map(jnp.zeros_like, params)
    (loss_sum, n, grads), _ = jax.lax.scan(body, (jnp.zeros(()), jnp.zeros(()), zeros), micro)
    return (loss_sum, n), grads


def _guarded_update(state: TrainState, grads, loss, grad_norm, lr, tx: optax.GradientTransformation, update_bound):
    """The optimizer update -> ``(params, opt_state, finite)``; where ``finite`` is False the params and the
    optimizer state come back untouched."""
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    # Non-finite guard: a NaN / inf loss, gradient or update leaves params and optimizer untouched
    # (optax's count included, so the schedule does not advance) and is counted. With a bound on the update
    # the decision is known before the optimizer runs, so its pass writes params and moments once; the norm
    # of the updates would need every update computed (a second pass: ~4 % of a step at 42 M params).
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if update_bound is not None:
        finite = finite & update_bound(lr, state.params)
    else:
        finite = finite & jnp.isfinite(optax.global_norm(updates))
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    return keep(new_params, state.params), keep(new_opt, state.opt_state), finite


def make_train_step(graphdef, t5_graphdef, s: StepConfig, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, mcfg: LMConfig, state_specs: TrainState, mesh, batch_keys,
                    update_bound=None, lora: LoRAConfig | None = None, base_specs=None):
    """A jitted ``step(state, batch, t5_params, seed_key) -> (state, metrics)`` over ``mesh``, training
    ``s.objective``. ``schedule`` is the optimizer's (logged at optax's update count, i.e. the rate actually
    applied). ``update_bound``: ``optim.finite_update_bound(config.optim)`` where ``tx`` is ``make_optimizer`` of
    that config; the guard then needs no pass over the updates (None: it checks their norm). ``lora``: train
    the adapters in the state on the frozen base given as the step's last argument, ``step(state, batch,
    t5_params, seed_key, base)`` (``base_specs``: its PartitionSpecs)."""
    objective = objective_named(s.objective)
    accum = int(s.grad_accum_steps)
    loss_fn = jax.value_and_grad(lambda p, base, pb, h: _loss_sum(graphdef, p, pb, h, objective, base, lora),
                                 has_aux=True)

    def step(state: TrainState, batch, t5_params, seed_key, *frozen):
        grad_fn = lambda p, pb, h: loss_fn(p, frozen[0] if frozen else None, pb, h)  # noqa: E731
        key = jax.random.fold_in(seed_key, state.step)
        hidden = _text_hidden(t5_graphdef, t5_params, batch)
        prepared = objective.prepare(batch, key, model_config=mcfg, step_config=s)
        (loss_sum, n), grads = _accumulated_grads(grad_fn, state.params, prepared, hidden, objective.PER_SAMPLE_KEYS,
                                                  accum, whole_batch_keys=not mcfg.mask_text_padding)
        denom = jnp.maximum(n, 1.0)
        loss = loss_sum / denom
        grads = jax.tree.map(lambda g: g / denom, grads)
        grad_norm = optax.global_norm(grads)
        lr = schedule(state.step - state.skipped)            # optax's update count before this step: its rate
        params, opt_state, finite = _guarded_update(state, grads, loss, grad_norm, lr, tx, update_bound)
        next_step = state.step + 1
        do_ema = finite & (next_step % int(s.ema_every) == 0)
        # lax.cond, not a select: the EMA pass over every parameter runs only on its steps (1 in ema_every)
        ema, ema_count = jax.lax.cond(
            do_ema, lambda e, c, p: ema_update(e, c, p, float(s.ema_decay)), lambda e, c, p: (e, c),
            state.ema, state.ema_count, params)
        skip = (~finite).astype(jnp.int32)
        new_state = TrainState(step=next_step, params=params, opt_state=opt_state, ema=ema, ema_count=ema_count,
                               skipped=state.skipped + skip, consecutive_skips=(state.consecutive_skips + 1) * skip)
        metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": lr,
                   "num_tokens": n, "mask_rate": prepared["mask_rate"], "finite": finite,
                   "stage": jnp.mean(jnp.asarray(prepared["stage"], jnp.float32)), "skipped": new_state.skipped,
                   "consecutive_skips": new_state.consecutive_skips}
        return new_state, metrics

    st_sh = to_shardings(state_specs, mesh)
    rep = NamedSharding(mesh, P())
    frozen_sh = () if lora is None else (to_shardings(base_specs, mesh),)
    return jax.jit(step, in_shardings=(st_sh, batch_shardings(batch_keys, mesh), rep, rep, *frozen_sh),
                   out_shardings=(st_sh, rep), donate_argnums=(0,))


def make_eval_step(graphdef, t5_graphdef, mcfg: LMConfig, param_specs, mesh, batch_keys,
                   s: StepConfig = StepConfig()):
    """``eval(params, batch, t5_params, key) -> loss per stage [K]`` of ``s.objective`` (fixed masks for a fixed
    key)."""
    objective = objective_named(s.objective)

    def ev(params, batch, t5_params, key):
        hidden = _text_hidden(t5_graphdef, t5_params, batch)
        losses = []
        for stage in range(mcfg.n_q):
            prepared = objective.prepare(batch, jax.random.fold_in(key, stage), model_config=mcfg, step_config=s,
                                         stage=stage)
            loss_sum, n = _loss_sum(graphdef, params, prepared, hidden, objective)
            losses.append(loss_sum / jnp.maximum(n, 1.0))
        return jnp.stack(losses)
    rep = NamedSharding(mesh, P())
    return jax.jit(ev, in_shardings=(to_shardings(param_specs, mesh), batch_shardings(batch_keys, mesh), rep, rep),
                   out_shardings=rep)
