"""The codec training loop: ``train(cfg, workdir)``; running it again on the same workdir resumes.

Per host: its slice of the files -> per-process batch -> one global array
(``make_array_from_process_local_data``) -> the jitted step. Logged every ``log_every`` steps
(``metrics.jsonl`` + TensorBoard, the only host sync), held-out metrics (EMA generator) every
``eval_every``, orbax checkpoints (state + data iterator) every ``checkpoint_every``, at the end and
on SIGTERM, through :class:`magnet_jax.training.checkpoint.Checkpointer`.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from magnet_jax import sharding
from magnet_jax.codec.config import CodecConfig, SeanetConfig
from magnet_jax.codec.frame_codec import FrameCodecConfig
from magnet_jax.codec.training_model import CodebookState, RVQTrainConfig, init_trainable_codec
from magnet_jax.codec_training import balancer
from magnet_jax.codec_training import input_pipeline as ip
from magnet_jax.codec_training.discriminator import make_discriminator
from magnet_jax.codec_training.state import CodecTrainState, fresh, make_optimizer, replicated
from magnet_jax.codec_training.step import gan_enabled, loss_weights, make_eval_step, make_train_step, wav_sharding
from magnet_jax.training.checkpoint import Checkpointer, PreemptionFlag
from magnet_jax.training.metrics import MetricsWriter

log = logging.getLogger("magnet_jax.codec_training")


def codec_config(cfg) -> CodecConfig | FrameCodecConfig:
    m = cfg.model
    if str(m.get("arch", "seanet")) == "frame":
        f = m.frame
        return FrameCodecConfig(sample_rate=int(m.sample_rate), channels=int(m.channels),
                                hop_length=_hop(cfg), n_fft=int(f.n_fft), width=int(f.width),
                                depth=int(f.depth), mlp_ratio=int(f.mlp_ratio), kernel_size=int(f.kernel_size),
                                phase=str(f.get("phase", "griffin_lim")), gl_iters=int(f.get("gl_iters", 32)),
                                dimension=int(m.dimension), total_codebooks=int(m.n_q), num_codebooks=int(m.n_q),
                                bins=int(m.bins), renormalize=bool(m.renormalize), name=str(cfg.name or "frame_codec"))
    if str(m.get("arch", "seanet")) != "seanet":
        raise ValueError(f"unknown codec arch {m.arch!r}: seanet or frame")
    se = SeanetConfig(channels=int(m.channels), dimension=int(m.dimension), n_filters=int(m.n_filters),
                      n_residual_layers=int(m.n_residual_layers), ratios=tuple(m.ratios),
                      kernel_size=int(m.kernel_size),
                      last_kernel_size=int(m.last_kernel_size), residual_kernel_size=int(m.residual_kernel_size),
                      dilation_base=int(m.dilation_base), causal=bool(m.causal), pad_mode=str(m.pad_mode),
                      norm=str(m.norm), true_skip=bool(m.true_skip), compress=int(m.compress), lstm=int(m.lstm))
    return CodecConfig(sample_rate=int(m.sample_rate), encoder=se, decoder=se, total_codebooks=int(m.n_q),
                       num_codebooks=int(m.n_q), bins=int(m.bins), renormalize=bool(m.renormalize),
                       name=str(cfg.name or "encodec"))


def _hop(cfg) -> int:
    return int(math.prod(cfg.model.ratios))


def rvq_config(cfg) -> RVQTrainConfig:
    r = cfg.rvq
    return RVQTrainConfig(decay=float(r.decay), kmeans_init=bool(r.kmeans_init), kmeans_iters=int(r.kmeans_iters),
                          threshold_ema_dead_code=float(r.threshold_ema_dead_code))


def build(cfg, mesh, *, init: bool = True):
    """(generator graphdef, discriminator graphdef, tx_g, tx_d, fresh state on ``mesh``); ``init=False``
    skips ``init_from`` (the state is only a template for a restore)."""
    ccfg = codec_config(cfg)
    model = init_trainable_codec(ccfg, jax.random.PRNGKey(int(cfg.seed)), rvq=rvq_config(cfg))
    graphdef, params, codebook = nnx.split(model, nnx.Param, CodebookState)
    params, codebook = nnx.to_pure_dict(params), nnx.to_pure_dict(codebook)
    if init and str(cfg.get("init_from", "") or ""):   # a fresh run starts from an export (a resume ignores it)
        params, codebook = weights_from_export(cfg, str(cfg.init_from), params, codebook)
    if gan_enabled(cfg):
        disc = make_discriminator(cfg.msstftd, ccfg.channels, nnx.Rngs(int(cfg.seed) + 1))
        disc_graphdef, disc_state = nnx.split(disc)
        disc_params = nnx.to_pure_dict(disc_state)
    else:
        disc_graphdef, disc_params = None, {}
    tx_g, tx_d = make_optimizer(cfg), make_optimizer(cfg)
    state = fresh(params, codebook, disc_params, tx_g, tx_d, balancer.init_state(loss_weights(cfg)))
    # one host copy per leaf: no two leaves may share a buffer (the step donates the state)
    state = jax.tree.map(lambda a: np.array(a), state)
    state = jax.device_put(state, replicated(state, mesh))
    return graphdef, disc_graphdef, tx_g, tx_d, state


def weights_from_export(cfg, path: str | Path, params: dict, codebook: dict) -> tuple[dict, dict]:
    """``(params, codebook)`` of the trainable codec taken from an exported frame codec folder
    (``tools/export_codec.py``, the bundled codec): the encoder and decoder weights as they are, the inference
    codebooks as the EMA codebooks (one use per code so far). Shapes must match ``cfg``'s model."""
    from magnet_jax.codec.frame_codec import is_frame_codec_dir, load_frame_codec
    if not is_frame_codec_dir(path):
        raise ValueError(f"init_from={path}: not an exported frame codec folder (config.json with model_type "
                         f"magnet_jax_frame_codec); to continue an EnCodec run, resume its training workdir")
    loaded = nnx.to_pure_dict(nnx.state(load_frame_codec(path).net))
    embed = np.asarray(loaded.pop("quantizer")["embed"], np.float32)
    want = jax.tree.map(np.shape, params)
    got = jax.tree.map(np.shape, loaded)
    if want != got or embed.shape != np.shape(codebook["quantizer"]["embed"]):
        raise ValueError(f"init_from={path}: its shapes differ from --config.model (n_fft, width, depth, "
                         f"dimension, bins, n_q must be the export's: see {Path(path) / 'config.json'})")
    q = codebook["quantizer"]
    new_cb = {"quantizer": {"embed": embed, "embed_avg": embed.copy(), "cluster_size": np.ones(q["cluster_size"].shape,
              np.float32), "inited": np.ones(q["inited"].shape, np.float32)}}
    return jax.tree.map(lambda a: np.asarray(a, np.float32), loaded), new_cb


def _abstract(state: CodecTrainState):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)


def _corpus(cfg):
    paths = ip.list_files(str(cfg.manifest), str(cfg.audio_dir))
    if cfg.eval_manifest or cfg.eval_audio_dir:
        return paths, ip.list_files(str(cfg.eval_manifest), str(cfg.eval_audio_dir))
    return ip.split_files(paths, float(cfg.eval_fraction))


def train(cfg, workdir: str | Path, *, progress: bool = False) -> dict:
    """Trains in ``workdir`` (resuming from its checkpoints); returns the last logged metrics."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = sharding.make_mesh(**cfg.mesh.to_dict())
    pc, pi = jax.process_count(), jax.process_index()
    data_ways = mesh.shape["data"] * mesh.shape["fsdp"]
    if int(cfg.batch_size) % data_ways:
        raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {data_ways} data-parallel devices: "
                         f"pass a multiple with --config.batch_size or a smaller --config.mesh.data")
    sr, C = int(cfg.model.sample_rate), int(cfg.model.channels)
    segment = int(round(float(cfg.segment_seconds) * sr))
    vectors = int(cfg.batch_size) * -(-segment // _hop(cfg))
    threshold = float(cfg.rvq.threshold_ema_dead_code)
    if threshold > 0 and vectors / int(cfg.model.bins) < threshold:
        log.warning("a step quantizes %d vectors for %d codes (%.2f per code): below the dead-code threshold "
                    "%.2f, so codes in normal use count as dead and are replaced at every step; raise "
                    "--config.batch_size or lower --config.rvq.threshold_ema_dead_code", vectors,
                    int(cfg.model.bins), vectors / int(cfg.model.bins), threshold)
    train_files, eval_files = _corpus(cfg)
    log.info("%d training files, %d held out", len(train_files), len(eval_files))
    data_iter = iter(ip.make_dataset(train_files, sample_rate=sr, channels=C, segment=segment,
                                     batch_size=int(cfg.batch_size) // pc, seed=int(cfg.seed), train=True,
                                     process_index=pi, process_count=pc, worker_count=int(cfg.worker_count)))
    held_out = ip.eval_batches(eval_files, sample_rate=sr, channels=C, segment=segment,
                               batch_size=int(cfg.batch_size), max_batches=int(cfg.eval_batches))

    graphdef, disc_graphdef, tx_g, tx_d, state = build(cfg, mesh)
    ckpt = Checkpointer(workdir / "checkpoints", keep=int(cfg.keep_checkpoints))
    restored = ckpt.restore(_abstract(state), data_iter)
    if restored is not None:
        state = restored
        log.info("resumed from step %d", int(state.step))
    step_fn = make_train_step(graphdef, disc_graphdef, cfg, tx_g, tx_d, mesh, state)
    eval_fn = make_eval_step(graphdef, cfg, mesh, state.ema) if held_out else None
    wsh = wav_sharding(mesh)
    seed_key = jax.random.PRNGKey(int(cfg.seed))
    writer = MetricsWriter(workdir)
    step, total = int(state.step), int(cfg.total_steps)
    bar = _progress(progress, step, total)
    last: dict = {}
    t_last, step_last = time.perf_counter(), step

    def evaluate():
        rows = [jax.device_get(eval_fn(state.ema["params"], state.ema["codebook"],
                                       jax.device_put(b, wsh), jax.random.PRNGKey(0))) for b in held_out]
        return {f"eval_{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}

    with PreemptionFlag() as preempted, sharding.use_mesh(mesh):
        if eval_fn is not None and step == 0:
            ev = evaluate()
            writer.write(0, ev)
            last.update(ev)
        while step < total:
            local = next(data_iter)
            wav = jax.make_array_from_process_local_data(wsh, np.asarray(local, np.float32))
            state, metrics = step_fn(state, wav, seed_key)
            step += 1
            if bar is not None:
                bar.update(1)
            if step % int(cfg.log_every) == 0 or step == total:
                m = jax.device_get(metrics)
                now = time.perf_counter()
                sps = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                last.update({k: float(v) for k, v in m.items()})
                last.update(steps_per_sec=sps, audio_seconds_per_sec=sps * int(cfg.batch_size) * segment / sr)
                writer.write(step, {k: v for k, v in last.items() if not k.startswith("eval_")})
                if bar is not None:
                    bar.set_postfix(g_loss=f"{last['g_loss']:.3f}", ppl=f"{last['perplexity']:.1f}")
                log.info("step %d g_loss %.4f (%.2f steps/s)", step, last["g_loss"], sps)
            if eval_fn is not None and (step % int(cfg.eval_every) == 0 or step == total):
                ev = evaluate()
                writer.write(step, ev)
                last.update(ev)
            if step % int(cfg.checkpoint_every) == 0 or step == total or preempted:
                ckpt.save(step, state, data_iter, force=True)
            if preempted:
                log.warning("SIGTERM: checkpoint saved at step %d, stopping", step)
                break
    if bar is not None:
        bar.close()
    ckpt.close()
    writer.close()
    return last


def _progress(enabled: bool, start: int, total: int):
    if not enabled or jax.process_index() != 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=start, desc="codec training", unit="step", dynamic_ncols=True)
