"""The sharded MAGNeT train / eval steps (pure functions, jitted over a Mesh).

One step: per-step key ``fold_in(seed_key, step)`` -> frozen T5 on the batch's tokens (or the
batch's precomputed ``text_hidden``) -> :func:`magnet_jax.objectives.magnet.prepare_batch` (stage, spans,
CFG dropout, decided once for the whole global batch) -> gradient of the masked cross-entropy,
accumulated over ``grad_accum_steps`` micro-batches -> clip + AdamW -> non-finite guard -> EMA of
the params every ``ema_every`` steps. The state is donated; nothing syncs with the host.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from magnet_jax.model import MagnetConfig
from magnet_jax.objectives import hybrid as hybrid_objective
from magnet_jax.objectives import magnet as masking
from magnet_jax.objectives import musicgen as musicgen_objective
from magnet_jax.sharding import batch_shardings
from magnet_jax.training.config import StepConfig
from magnet_jax.training.state import TrainState, to_shardings


def _text_hidden(t5_graphdef, t5_params, batch):
    if "text_hidden" in batch:
        return batch["text_hidden"]
    t5 = nnx.merge(t5_graphdef, t5_params)
    return jax.lax.stop_gradient(t5(batch["text_ids"], batch["text_mask"]))


# config.objective -> its module (prepare_batch, loss_from_batch): MAGNeT's span masking, or Hybrid-MAGNeT's
# AR prefix + span-masked suffix (objectives/hybrid.py; a HybridMagnetLM, per-sample stage)
OBJECTIVES = {"magnet": masking, "hybrid": hybrid_objective, "musicgen": musicgen_objective}


def _loss_sum(graphdef, params, prepared, hidden, objective: str = "magnet"):
    lm = nnx.merge(graphdef, params)
    loss, n = OBJECTIVES[objective].loss_from_batch(lm, prepared, hidden)
    return loss * n, n


def _prepare(s: StepConfig, mcfg, batch, key, stage=None):
    if s.objective == "musicgen":   # MusicGenLM: delay pattern, CE on every codebook (stage: eval per codebook)
        return musicgen_objective.prepare_batch(batch["codes"], batch["padding_mask"], batch["text_mask"], key,
                                                delays=mcfg.delays, special=mcfg.mask_id, stage=stage,
                                                cfg_dropout_p=float(s.cfg_dropout) if stage is None else 0.0,
                                                per_sample_cfg=bool(s.per_sample_cfg))
    kw = dict(num_codebooks=mcfg.n_q, mask_id=mcfg.mask_id, span_len=mcfg.span_len, stage=stage)
    if s.objective == "hybrid":
        return hybrid_objective.prepare_batch(batch["codes"], batch["padding_mask"], batch["text_mask"], key,
                                              cfg_dropout_p=float(s.cfg_dropout) if stage is None else 0.0,
                                              per_sample_cfg=bool(s.per_sample_cfg), **kw)
    if stage is not None:
        return masking.prepare_batch(batch["codes"], batch["padding_mask"], batch["text_mask"], key, **kw)
    return masking.prepare_batch(batch["codes"], batch["padding_mask"], batch["text_mask"], key,
                                 cfg_dropout_p=float(s.cfg_dropout), per_sample_stage=bool(s.per_sample_stage),
                                 per_sample_cfg=bool(s.per_sample_cfg), **kw)


def ema_update(ema, count, params, decay: float):
    """audiocraft ``ModuleDictEMA(unbias=True).step``: ``count = count * decay + 1``, ``w = 1 / count``,
    ``ema = (1 - w) ema + w params`` (the first update copies the params; the init has weight 0)."""
    count = count * decay + 1.0
    w = 1.0 / count
    return jax.tree.map(lambda e, p: (1.0 - w) * e + w * p, ema, params), count


def make_train_step(graphdef, t5_graphdef, s: StepConfig, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, mcfg: MagnetConfig, state_specs: TrainState, mesh, batch_keys,
                    update_bound=None):
    """A jitted ``step(state, batch, t5_params, seed_key) -> (state, metrics)`` over ``mesh``.
    ``schedule`` is the optimizer's (logged at optax's update count, i.e. the rate actually applied).
    ``update_bound``: ``optim.finite_update_bound(config.optim)`` where ``tx`` is ``make_optimizer`` of that
    config; the guard then needs no pass over the updates (None: it checks their norm)."""
    accum = int(s.grad_accum_steps)

    def step(state: TrainState, batch, t5_params, seed_key):
        key = jax.random.fold_in(seed_key, state.step)
        hidden = _text_hidden(t5_graphdef, t5_params, batch)
        prepared = _prepare(s, mcfg, batch, key)
        grad_fn = jax.value_and_grad(lambda p, pb, h: _loss_sum(graphdef, p, pb, h, s.objective), has_aux=True)
        B = batch["codes"].shape[0]
        if accum == 1:
            (loss_sum, n), grads = grad_fn(state.params, prepared, hidden)
        else:
            if B % accum:
                raise ValueError(f"batch {B} is not divisible by grad_accum_steps={accum}")
            # Token-weighted sums over micro-batches: accumulation equals one big batch (a global token
            # mean; audiocraft's multi-GPU loss is a mean of per-rank token means, equal only on one GPU).
            stage = prepared["stage"]
            per_sample = ["inputs", "targets", "weights", "text_mask"] + (["stage"] if jnp.ndim(stage) else [])
            per_sample += [k for k in ("prompt_step",) if k in prepared]          # hybrid objective
            micro_in = {k: prepared[k] for k in per_sample}
            if not mcfg.mask_text_padding:
                # Reference semantics mask the keys past the *batch's* longest text: give every
                # micro-batch the whole batch's (a row-independent mask is the same in any split).
                tm = prepared["text_mask"]
                longest = jnp.max(jnp.sum((tm > 0).astype(jnp.int32), axis=-1))
                micro_in["key_mask"] = jnp.broadcast_to(jnp.arange(tm.shape[-1]) < longest, tm.shape).astype(tm.dtype)
            micro = jax.tree.map(lambda x: x.reshape((accum, B // accum) + x.shape[1:]), (micro_in, hidden))

            def body(carry, mb):
                pb, h = mb
                (ls, nn), g = grad_fn(state.params, {"stage": stage, **pb}, h)
                acc_l, acc_n, acc_g = carry
                return (acc_l + ls, acc_n + nn, jax.tree.map(jnp.add, acc_g, g)), None
            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (loss_sum, n, grads), _ = jax.lax.scan(body, (jnp.zeros(()), jnp.zeros(()), zeros), micro)
        denom = jnp.maximum(n, 1.0)
        loss = loss_sum / denom
        grads = jax.tree.map(lambda g: g / denom, grads)
        grad_norm = optax.global_norm(grads)
        applied = state.step - state.skipped                 # optax's update count before this step
        lr = schedule(applied)                               # the rate this step applies
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
        params, opt_state = keep(new_params, state.params), keep(new_opt, state.opt_state)
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
    return jax.jit(step, in_shardings=(st_sh, batch_shardings(batch_keys, mesh), rep, rep),
                   out_shardings=(st_sh, rep), donate_argnums=(0,))


def make_eval_step(graphdef, t5_graphdef, mcfg: MagnetConfig, param_specs, mesh, batch_keys,
                   s: StepConfig = StepConfig()):
    """``eval(params, batch, t5_params, key) -> loss per stage [K]`` (fixed masks for a fixed key)."""
    def ev(params, batch, t5_params, key):
        hidden = _text_hidden(t5_graphdef, t5_params, batch)
        losses = []
        for stage in range(mcfg.n_q):
            prepared = _prepare(s, mcfg, batch, jax.random.fold_in(key, stage), stage=stage)
            loss_sum, n = _loss_sum(graphdef, params, prepared, hidden, s.objective)
            losses.append(loss_sum / jnp.maximum(n, 1.0))
        return jnp.stack(losses)
    rep = NamedSharding(mesh, P())
    return jax.jit(ev, in_shardings=(to_shardings(param_specs, mesh), batch_shardings(batch_keys, mesh), rep, rep),
                   out_shardings=rep)
