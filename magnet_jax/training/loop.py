"""The training loop: ``train(config, workdir)``; running it again on the same workdir resumes.

Per host: its slice of the dataset -> per-process batch -> one global array per input
(``make_array_from_process_local_data``) -> the jitted sharded step. Logging (``log_every``) is the
only host sync. Checkpoints every ``checkpoint_every`` steps, at the end, and on SIGTERM. Evaluation
and the exported weights (``WORKDIR/export``) use the EMA, as audiocraft's validation and ``best_state``.
With ``config.lora_rank > 0`` the train state holds LoRA adapters on the frozen base (training/lora.py): evaluation
and the export use the base with the EMA adapters merged in, and the export also holds the adapter alone.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from magnet_jax import hub, sharding
from magnet_jax.convert.t5 import load_text_stack
from magnet_jax.data.input_pipeline import data_source, find_builder_dir, make_dataset
from magnet_jax.data.tokenize.codec_record import check_codec_compatible, read_codec_info
from magnet_jax.model.config import LMConfig
from magnet_jax.model.families import lm_class  # the LM class of a config (loop.lm_class: tools, tests)
from magnet_jax.training import lora as LT
from magnet_jax.training import state as S
from magnet_jax.training.checkpoint import Checkpointer, PreemptionFlag
from magnet_jax.training.config import DataConfig, DistributedConfig, TrainConfig
from magnet_jax.training.metrics import MetricsWriter, peak_flops_per_device, train_flops_per_step
from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
from magnet_jax.training.step import make_eval_step, make_train_step
from magnet_jax.util.user_input import UserError, one_line

log = logging.getLogger("magnet_jax.train")
BATCH_KEYS = ("codes", "padding_mask", "text_ids", "text_mask")


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite steps (the message says what to change)."""


def maybe_initialize_distributed(d: DistributedConfig) -> None:
    """``jax.distributed.initialize`` (must run before any JAX computation). On TPU pods leave
    ``coordinator_address`` empty and call ``jax.distributed.initialize()`` yourself, or set it."""
    if d.local_device_count:
        jax.config.update("jax_num_cpu_devices", int(d.local_device_count))
    if d.coordinator_address and int(d.num_processes) > 1:
        jax.distributed.initialize(coordinator_address=d.coordinator_address, num_processes=int(d.num_processes),
                                   process_id=int(d.process_id), initialization_timeout=120)


def initial_model(init_from: str, seed: int, mcfg: LMConfig, mesh):
    """(graphdef, params, param_specs): from ``init_from`` (fine-tuning; a MAGNeT checkpoint also starts a
    Hybrid-MAGNeT of its architecture, which has the same parameters) or a seeded random init, created directly
    with its shardings (no full copy on one device)."""
    cls = lm_class(mcfg)
    if init_from:
        from magnet_jax.convert import load_audiocraft_lm
        try:
            lm = load_audiocraft_lm(init_from)
        except (hub.HubError, OSError, ValueError) as e:
            raise UserError(f"config.init_from={init_from!r} cannot be loaded: {one_line(e)}") from None
        arch, mine = lm.config.architecture(), mcfg.architecture()
        if "delays" in mine and "delays" not in arch:   # MAGNeT -> Hybrid-MAGNeT: the same parameters
            mine = {k: v for k, v in mine.items() if k != "delays"}
        if arch != mine:
            diff = {k: (mine.get(k), arch.get(k)) for k in arch if arch.get(k) != mine.get(k)}
            raise UserError(f"init_from={init_from!r} does not match config.model: (config, checkpoint) = {diff}")
        _, params, _ = S.split_model(lm)
        graphdef, _, specs = S.split_model(nnx.eval_shape(lambda: cls(mcfg, rngs=nnx.Rngs(0))))
        return graphdef, jax.device_put(params, S.to_shardings(specs, mesh)), specs
    abstract = nnx.eval_shape(lambda: cls(mcfg, rngs=nnx.Rngs(seed)))
    graphdef, _, specs = S.split_model(abstract)
    make = jax.jit(lambda: nnx.to_pure_dict(nnx.state(cls(mcfg, rngs=nnx.Rngs(seed)))),
                   out_shardings=S.to_shardings(specs, mesh))
    return graphdef, make(), specs


def _global_batch(local: dict, shardings: dict) -> dict:
    return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v)) for k, v in local.items()}


def eval_batches(batches, limit: int) -> list:
    """The first ``limit`` eval batches of this process, cut to the count every process has: processes
    whose shard yields fewer batches would otherwise leave the others waiting in the global-array
    assembly forever. The eval set is fixed (no shuffle, crop at 0), so the loop computes it once."""
    local = list(itertools.islice(batches, limit))
    n = len(local)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        n = int(np.min(multihost_utils.process_allgather(np.asarray(n, np.int32))))
    return local[:n]


def heldout_losses(eval_fn, weights, eval_set: list, t5_params, shardings: dict) -> dict:
    """``{"eval_loss_stage{k}": nats, "eval_loss": their mean}`` of ``weights`` over the fixed eval batches, each
    with the eval step's fixed masks ``PRNGKey(1000 + i)``; ``{}`` when there is no batch."""
    losses = [np.asarray(eval_fn(weights, _global_batch(b, shardings), t5_params, jax.random.PRNGKey(1000 + i)))
              for i, b in enumerate(eval_set)]
    if not losses:
        return {}
    per_stage = np.mean(losses, 0)
    return {**{f"eval_loss_stage{k}": float(v) for k, v in enumerate(per_stage)}, "eval_loss": float(per_stage.mean())}


def export_ema(graphdef, ema, mcfg: LMConfig, folder: Path, step: int) -> None:
    """The EMA weights as ``magnet_jax_lm.safetensors`` + config (``convert.load_lm_safetensors``)."""
    from jax.experimental import multihost_utils

    from magnet_jax.convert import save_lm_safetensors
    host = multihost_utils.process_allgather(ema, tiled=True) if jax.process_count() > 1 else jax.device_get(ema)
    if jax.process_index() == 0:
        save_lm_safetensors(nnx.merge(graphdef, host), folder, extra={"step": int(step), "weights": "ema"})


def _check_dataset(d: DataConfig, cfg: TrainConfig) -> Path:
    """The dataset folder, checked before anything is built: it exists and is readable, was tokenized with the
    configured codec, and has the train and eval splits (a bad eval split used to surface at the first eval)."""
    if not d.data_dir:
        raise FileNotFoundError("config.data_dir is empty: pass --config.data_dir=DIR (made by "
                                "tools/tokenize_dataset.py)")
    if not Path(d.data_dir).is_dir():
        raise FileNotFoundError(f"config.data_dir={d.data_dir!r} does not exist: tokenize a corpus there first "
                                f"(tools/tokenize_dataset.py --data_dir=...)")
    if not os.access(d.data_dir, os.R_OK | os.X_OK):
        raise UserError(f"config.data_dir={d.data_dir!r} is not readable: check its permissions")
    builder_dir = find_builder_dir(d.data_dir, d.dataset_name)
    # refuses a dataset of another codec
    check_codec_compatible(read_codec_info(builder_dir), {"model": cfg.model.to_dict(),
                                                          "codec": dataclasses.asdict(cfg.codec)})
    for field, split in (("train_split", d.train_split), ("eval_split", d.eval_split)):
        if field == "train_split" or split:
            try:
                if not len(data_source(builder_dir, split)):
                    raise ValueError("it has no examples")
            except (ValueError, KeyError, AssertionError, OSError) as e:
                raise UserError(f"config.{field}={split!r} is not usable in {str(builder_dir)!r}: {one_line(e)} "
                                f"(a split name such as 'train', or a slice such as 'train[:5%]')") from None
    return builder_dir


def _text_stack(cfg: TrainConfig):
    try:
        return load_text_stack(cfg.text.name, cfg.model.text_dim)
    except (hub.HubError, OSError, ValueError) as e:
        raise UserError(f"config.text.name={cfg.text.name!r}: {one_line(e)}") from None


def _mesh(cfg: TrainConfig):
    try:
        return sharding.make_mesh(**dataclasses.asdict(cfg.mesh))
    except ValueError as e:
        raise UserError(f"config.mesh: {e} (-1 = the remaining devices)") from None


def lm_dataset(cfg: TrainConfig, builder_dir: Path, tokenizer, split: str, train: bool, batch_size: int = 0):
    """This process's batches of ``split`` as the trainer reads them (``train``: random crops, description
    augmentation, word dropout, shuffled; else the fixed eval form: crops at 0, no augmentation, in order), of
    ``batch_size`` (default: the config's global batch over the processes)."""
    d, pc = cfg.data, jax.process_count()
    return make_dataset(data_source(builder_dir, split), segment_frames=cfg.model.segment_frames,
                        pad_id=cfg.model.mask_id, tokenizer=tokenizer, text_len=int(cfg.text.max_length),
                        builder_dir=builder_dir, batch_size=batch_size or d.batch_size // pc, seed=cfg.loop.seed,
                        min_segment_ratio=d.min_segment_ratio, sample_on_duration=d.sample_on_duration,
                        merge_text_p=d.merge_text_p, drop_desc_p=d.drop_desc_p, drop_other_p=d.drop_other_p,
                        word_dropout=float(cfg.text.word_dropout) if train else 0.0, train=train,
                        process_index=jax.process_index(), process_count=pc,
                        worker_count=d.worker_count if train else 0)


def train(cfg: TrainConfig, workdir: str | Path) -> dict:
    """Trains ``cfg`` in ``workdir`` (resuming from its checkpoints); returns the last logged metrics."""
    maybe_initialize_distributed(cfg.distributed)
    # everything that can be checked is checked before the first step (and before any checkpoint is touched)
    mesh = _mesh(cfg)
    builder_dir = _check_dataset(cfg.data, cfg)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mcfg, d, lp = cfg.model, cfg.data, cfg.loop
    pc = jax.process_count()
    if d.batch_size % pc:
        raise UserError(f"config.batch_size={d.batch_size} is not divisible by the {pc} processes")
    T, S_txt = mcfg.segment_frames, int(cfg.text.max_length)

    tokenizer, t5 = _text_stack(cfg)
    t5_graphdef, t5_state = nnx.split(t5.module)
    t5_params = jax.device_put(nnx.to_pure_dict(t5_state),
                               jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

    data_iter = iter(lm_dataset(cfg, builder_dir, tokenizer, d.train_split, True))

    tx, schedule = make_optimizer(cfg.optim), make_schedule(cfg.optim)
    graphdef, params, param_specs = initial_model(lp.init_from, lp.seed, mcfg, mesh)
    adapter = cfg.lora.adapter()
    base, trained_specs, frozen, merged = None, param_specs, (), None
    if adapter is not None:     # LoRA: the state trains adapters; the base is a frozen input of the step
        base = params
        params, trained_specs = LT.initial_adapters(base, param_specs, adapter, lp.seed, mesh)
        frozen, merge = (base,), LT.make_merge(param_specs, trained_specs, adapter, mesh)
        merged = lambda adapters: merge(base, adapters)  # noqa: E731
        if not lp.init_from:
            log.warning("config.lora_rank=%d without config.init_from: adapters on a random base", adapter.rank)
    specs = S.state_specs(tx, params, trained_specs)
    ckpt = Checkpointer(workdir / "checkpoints", keep=lp.keep_checkpoints)
    state = ckpt.restore(S.abstract_state(tx, params, specs, mesh), data_iter)
    if state is None:
        state = S.init_state(tx, params, specs, mesh)
        log.info("starting from scratch" + (f" (init_from {lp.init_from})" if lp.init_from else ""))
    else:
        log.info("resumed from step %d", int(state.step))
    del params
    b_sh = sharding.batch_shardings(BATCH_KEYS, mesh)
    step_fn = make_train_step(graphdef, t5_graphdef, cfg.step, tx, schedule, mcfg, specs, mesh, BATCH_KEYS,
                              update_bound=finite_update_bound(cfg.optim), lora=adapter, base_specs=param_specs)
    ema_model = (lambda ema: ema) if merged is None else merged     # the EMA weights evaluated and exported
    eval_fn = make_eval_step(graphdef, t5_graphdef, mcfg, param_specs, mesh, BATCH_KEYS,
                             cfg.step) if d.eval_split else None
    eval_set = None
    seed_key = jax.random.PRNGKey(lp.seed)
    writer = MetricsWriter(workdir)
    flops = train_flops_per_step(mcfg, d.batch_size, T, S_txt, lora=adapter)    # LoRA: no base weight gradients
    peak = peak_flops_per_device(lp.peak_tflops_per_device) * jax.device_count()
    total = cfg.optim.total_steps
    step = int(state.step)
    last: dict = {}
    t_last, step_last = time.perf_counter(), step
    try:
        with PreemptionFlag() as preempted, sharding.use_mesh(mesh):
            while step < total:
                batch = _global_batch(next(data_iter), b_sh)
                state, metrics = step_fn(state, batch, t5_params, seed_key, *frozen)
                step += 1
                if step % lp.log_every == 0 or step == total:
                    m = jax.device_get(metrics)
                    now = time.perf_counter()
                    sps = (step - step_last) / max(now - t_last, 1e-9)
                    t_last, step_last = now, step
                    last = {**{k: float(v) for k, v in m.items()}, "steps_per_sec": sps,
                            "tokens_per_sec": sps * d.batch_size * T, "mfu": sps * flops / peak}
                    if not m["finite"]:
                        log.warning("step %d: non-finite loss or gradients, update skipped (%d so far)", step,
                                    int(m["skipped"]))
                    writer.write(step, last)
                    log.info("step %d loss %.4f (%.2f steps/s)", step, last["loss"], sps)
                    if lp.max_consecutive_skips and int(m["consecutive_skips"]) >= lp.max_consecutive_skips:
                        raise TrainingDiverged(
                            f"step {step}: {int(m['consecutive_skips'])} consecutive updates skipped for non-finite "
                            f"loss or gradients (config.max_consecutive_skips={lp.max_consecutive_skips}); the last "
                            f"checkpoint is intact: lower config.learning_rate or check the data")
                if eval_fn is not None and (step % lp.eval_every == 0 or step == total):
                    if eval_set is None:
                        eval_set = eval_batches(iter(lm_dataset(cfg, builder_dir, tokenizer, d.eval_split, False)),
                                                lp.eval_batches)
                    ev = heldout_losses(eval_fn, ema_model(state.ema), eval_set, t5_params, b_sh)
                    if ev:
                        writer.write(step, ev)
                        last.update(ev)
                    else:
                        log.warning("eval split %r has no full batch of %d examples: no held-out loss (lower "
                                    "batch_size or add data)", d.eval_split, d.batch_size)
                if step % lp.checkpoint_every == 0 or step == total or preempted:
                    ckpt.save(step, state, data_iter, force=True)
                if preempted:
                    log.warning("SIGTERM: checkpoint saved at step %d, stopping", step)
                    break
        if step >= total:
            export_ema(graphdef, ema_model(state.ema), mcfg, workdir / "export", step)
            if adapter is not None:
                LT.export_adapter(workdir / "export", state.ema, adapter, base=lp.init_from, model=mcfg, step=step)
    finally:
        ckpt.close()
        writer.close()
    return last
