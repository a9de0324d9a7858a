"""The training loop: ``train(config, workdir)``; running it again on the same workdir resumes.

Per host: its slice of the dataset -> per-process batch -> one global array per input
(``make_array_from_process_local_data``) -> the jitted sharded step. Logging (``log_every``) is the
only host sync. Checkpoints every ``checkpoint_every`` steps, at the end, and on SIGTERM.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax import sharding
from magnet_jax.configs import model_config
from magnet_jax.data.pipeline import data_source, find_builder_dir, make_dataset
from magnet_jax.data.tokenize import check_codec_compatible, read_codec_info
from magnet_jax.model import MagnetLM
from magnet_jax.text.presets import load_text_stack
from magnet_jax.training import state as S
from magnet_jax.training.checkpoint import Checkpointer, PreemptionFlag
from magnet_jax.training.metrics import MetricsWriter, peak_flops_per_device, train_flops_per_step
from magnet_jax.training.optim import make_optimizer
from magnet_jax.training.step import batch_shardings, make_eval_step, make_train_step

log = logging.getLogger("magnet_jax.train")


def maybe_initialize_distributed(cfg) -> None:
    """``jax.distributed.initialize`` from ``cfg.distributed`` (must run before any JAX computation).
    On TPU pods leave ``coordinator_address`` empty and call ``jax.distributed.initialize()`` yourself,
    or set it: the cluster is then auto-detected."""
    d = cfg.distributed
    if d.local_device_count:
        jax.config.update("jax_num_cpu_devices", int(d.local_device_count))
    if d.coordinator_address and int(d.num_processes) > 1:
        jax.distributed.initialize(coordinator_address=d.coordinator_address, num_processes=int(d.num_processes),
                                   process_id=int(d.process_id), initialization_timeout=120)


def initial_model(cfg, mcfg, mesh):
    """(graphdef, params, param_specs): from ``init_from`` (fine-tuning) or a seeded random init,
    created directly with its shardings (no full copy on one device)."""
    if cfg.init_from:
        from magnet_jax.convert import load_audiocraft_lm
        lm = load_audiocraft_lm(cfg.init_from)
        arch = {k: v for k, v in lm.config.to_dict().items() if k not in ("dtype", "remat", "scan_unroll",
                                                                           "mask_text_padding")}
        mine = {k: getattr(mcfg, k) for k in arch}
        if arch != mine:
            diff = {k: (mine[k], arch[k]) for k in arch if arch[k] != mine[k]}
            raise ValueError(f"init_from={cfg.init_from!r} does not match config.model: (config, checkpoint) = {diff}")
        _, params, _ = S.split_model(lm)
        graphdef, _, specs = S.split_model(nnx.eval_shape(lambda: MagnetLM(mcfg, rngs=nnx.Rngs(0))))
        return graphdef, jax.device_put(params, S.to_shardings(specs, mesh)), specs
    abstract = nnx.eval_shape(lambda: MagnetLM(mcfg, rngs=nnx.Rngs(cfg.seed)))
    graphdef, _, specs = S.split_model(abstract)
    make = jax.jit(lambda: nnx.to_pure_dict(nnx.state(MagnetLM(mcfg, rngs=nnx.Rngs(cfg.seed)))),
                   out_shardings=S.to_shardings(specs, mesh))
    return graphdef, make(), specs


def _global_batch(local: dict, shardings: dict) -> dict:
    return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v)) for k, v in local.items()}


def train(cfg, workdir: str | Path) -> dict:
    """Trains ``cfg`` in ``workdir`` (resuming from its checkpoints); returns the last logged metrics."""
    maybe_initialize_distributed(cfg)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mcfg = model_config(cfg)
    mesh = sharding.make_mesh(**cfg.mesh.to_dict())
    pc, pi = jax.process_count(), jax.process_index()
    if cfg.batch_size % pc:
        raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {pc} processes")
    T, S_txt = mcfg.segment_frames, int(cfg.text.max_length)

    tokenizer, t5 = load_text_stack(cfg.text.name, mcfg.text_dim)
    t5_graphdef, t5_state = nnx.split(t5.module)
    t5_params = jax.device_put(nnx.to_pure_dict(t5_state), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

    if not cfg.data_dir:
        raise ValueError("config.data_dir is empty: pass --config.data_dir=DIR (made by tools/tokenize_dataset.py)")
    builder_dir = find_builder_dir(cfg.data_dir, cfg.dataset_name)
    check_codec_compatible(read_codec_info(builder_dir), cfg)   # refuses a dataset of another codec

    def dataset(split, train):
        return make_dataset(data_source(builder_dir, split), segment_frames=T, tokenizer=tokenizer, text_len=S_txt,
                            batch_size=cfg.batch_size // pc, seed=cfg.seed, min_segment_ratio=cfg.min_segment_ratio,
                            word_dropout=float(cfg.text.word_dropout) if train else 0.0, train=train,
                            process_index=pi, process_count=pc, worker_count=cfg.worker_count if train else 0)
    data_iter = iter(dataset(cfg.train_split, True))

    tx = make_optimizer(cfg)
    graphdef, params, param_specs = initial_model(cfg, mcfg, mesh)
    specs = S.state_specs(tx, params, param_specs)
    ckpt = Checkpointer(workdir / "checkpoints", keep=cfg.keep_checkpoints)
    state = ckpt.restore(S.abstract_state(tx, params, specs, mesh), data_iter)
    if state is None:
        state = S.init_state(tx, params, specs, mesh)
        log.info("starting from scratch" + (f" (init_from {cfg.init_from})" if cfg.init_from else ""))
    else:
        log.info("resumed from step %d", int(state.step))
    del params
    keys = ("codes", "padding_mask", "text_ids", "text_mask")
    b_sh = batch_shardings(keys, mesh)
    step_fn = make_train_step(graphdef, t5_graphdef, cfg, tx, mcfg, specs, mesh, keys)
    eval_fn = make_eval_step(graphdef, t5_graphdef, mcfg, param_specs, mesh, keys) if cfg.eval_split else None
    seed_key = jax.random.PRNGKey(cfg.seed)
    writer = MetricsWriter(workdir)
    flops = train_flops_per_step(mcfg, cfg.batch_size, T, S_txt)
    peak = peak_flops_per_device(cfg.peak_tflops_per_device) * jax.device_count()
    step = int(state.step)
    last: dict = {}
    t_last, step_last = time.perf_counter(), step
    with PreemptionFlag() as preempted, sharding.use_mesh(mesh):
        while step < cfg.total_steps:
            batch = _global_batch(next(data_iter), b_sh)
            state, metrics = step_fn(state, batch, t5_params, seed_key)
            step += 1
            if step % cfg.log_every == 0 or step == cfg.total_steps:
                m = jax.device_get(metrics)
                now = time.perf_counter()
                sps = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                last = {**{k: float(v) for k, v in m.items()}, "steps_per_sec": sps,
                        "tokens_per_sec": sps * cfg.batch_size * T, "mfu": sps * flops / peak}
                if not m["finite"]:
                    log.warning("step %d: non-finite loss or gradients, update skipped (%d so far)", step,
                                int(m["skipped"]))
                writer.write(step, last)
                log.info("step %d loss %.4f (%.2f steps/s)", step, last["loss"], sps)
            if eval_fn is not None and (step % cfg.eval_every == 0 or step == cfg.total_steps):
                losses = []
                for i, b in enumerate(dataset(cfg.eval_split, False)):
                    if i >= cfg.eval_batches:
                        break
                    losses.append(np.asarray(eval_fn(state.params, _global_batch(b, b_sh), t5_params,
                                                      jax.random.PRNGKey(1000 + i))))
                if losses:
                    per_stage = np.mean(losses, 0)
                    ev = {f"eval_loss_stage{k}": float(v) for k, v in enumerate(per_stage)}
                    ev["eval_loss"] = float(per_stage.mean())
                    writer.write(step, ev)
                    last.update(ev)
            if step % cfg.checkpoint_every == 0 or step == cfg.total_steps or preempted:
                ckpt.save(step, state, data_iter, force=True)
            if preempted:
                log.warning("SIGTERM: checkpoint saved at step %d, stopping", step)
                break
    ckpt.wait()
    ckpt.close()
    writer.close()
    return last
