"""Codec-training throughput of the configs in configs/codec.py, side by side in one run.

  python -m benchmarks.codec_throughput                                   # bundled (frame) vs bundled_seanet
  python -m benchmarks.codec_throughput --configs=bundled,bundled_seanet,tiny --batch=16 --profile_dir=/tmp/p

For each config: the jitted training step (magnet_jax.codec_training.step, the trainer's own program) on
random audio of the config's crop length, timed as the mean of ``--reps`` steps after the compilation;
seconds of audio trained per wall-clock second; FLOPs per step from XLA's ``cost_analysis`` of the compiled
step; MFU = FLOPs / step time / this host's measured matmul peak (the best GEMM rate XLA reaches here,
:func:`magnet_jax.training.metrics.measured_matmul_flops`); parameter count. ``--profile_dir`` writes a
``jax.profiler`` trace of a few steps of each config. Writes benchmarks/results/codec_throughput.json.
"""
from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.common import machine, write_json

flags.DEFINE_list("configs", ["bundled", "bundled_seanet"], "configs/codec.py names")
flags.DEFINE_integer("batch", 0, "batch size (0: each config's own)")
flags.DEFINE_integer("reps", 5, "timed steps")
flags.DEFINE_string("profile_dir", None, "write a jax.profiler trace per config here")
flags.DEFINE_string("out", None, "JSON output path")
FLAGS = flags.FLAGS


def _config(name: str, batch: int):
    import importlib.util
    spec = importlib.util.spec_from_file_location("codec_configs", "configs/codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config(name)
    if batch:
        cfg.batch_size = batch
    return cfg


def measure(name: str, batch: int, reps: int, profile_dir: str | None) -> dict:
    from magnet_jax import sharding
    from magnet_jax.codec_training.loop import build
    from magnet_jax.codec_training.step import make_train_step, wav_sharding
    cfg = _config(name, batch)
    mesh = sharding.make_mesh(**cfg.mesh.to_dict())
    graphdef, disc_graphdef, tx_g, tx_d, state = build(cfg, mesh)
    n_params = int(sum(np.size(a) for a in jax.tree.leaves(state.params)))
    step = make_train_step(graphdef, disc_graphdef, cfg, tx_g, tx_d, mesh, state)
    sr = int(cfg.model.sample_rate)
    n = int(round(float(cfg.segment_seconds) * sr))
    rng = np.random.default_rng(0)
    wav = jax.device_put(rng.standard_normal((int(cfg.batch_size), int(cfg.model.channels), n)).astype(np.float32)
                         * 0.1, wav_sharding(mesh))
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    compiled = step.lower(state, wav, key).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0))
    state, m = step(state, wav, key)                    # first call: the k-means init branch
    jax.block_until_ready(m)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        state, m = step(state, wav, key)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    if profile_dir:
        with jax.profiler.trace(f"{profile_dir}/{name}"):
            for _ in range(3):
                state, m = step(state, wav, key)
            jax.block_until_ready(m)
    sec = float(np.mean(times))
    return dict(config=name, arch=str(cfg.model.get("arch", "seanet")), batch=int(cfg.batch_size),
                segment_seconds=float(cfg.segment_seconds), params=n_params, compile_s=compile_s,
                step_s=sec, step_s_min=float(np.min(times)), flops_per_step=flops,
                audio_seconds_per_sec=int(cfg.batch_size) * n / sr / sec, achieved_flops=flops / sec)


def main(argv):
    del argv
    from magnet_jax.training.metrics import measured_matmul_flops
    rows = [measure(n, FLAGS.batch, FLAGS.reps, FLAGS.profile_dir) for n in FLAGS.configs]
    peak = measured_matmul_flops()
    for r in rows:
        r["mfu"] = r["achieved_flops"] / peak
        print(f"{r['config']:>16} ({r['arch']}, {r['params'] / 1e6:.2f} M params, batch {r['batch']} x "
              f"{r['segment_seconds']:g} s): {r['step_s'] * 1e3:.0f} ms/step, {r['audio_seconds_per_sec']:.1f} s of "
              f"audio / s, {r['flops_per_step'] / 1e9:.1f} GFLOP/step, MFU {100 * r['mfu']:.1f} %")
    path = write_json("codec_throughput", {"machine": machine(), "matmul_peak_flops": peak, "rows": rows}, FLAGS.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
