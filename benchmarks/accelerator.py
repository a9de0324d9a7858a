"""Attention implementations on whatever backend jax finds (GPU / TPU; CPU for a smoke run): parity of
each ``attention_impl`` against "xla" (logits max-abs diff), then forward, train step and generate timings,
MFU against the device's peak and compiled peak memory. Writes benchmarks/results/accelerator_<backend>.json.

  python -m benchmarks.accelerator                       # magnet-small shape on an accelerator, tiny on CPU
  python -m benchmarks.accelerator --preset=tiny --impls=xla,dot_product_attention

Shapes: ``small`` = magnet-small (1024-dim, 24 layers, 16 heads, 10 s = 500 frames, batch 8, bf16);
``tiny`` = 128-dim, 2 layers, 2 s, batch 2, fp32 (CPU). No reference (torch) is needed: the parity
reference is this port's own "xla" path, itself checked against audiocraft by tests/parity.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time

from absl import app, flags

from benchmarks.common import timeit, write_json, xla_memory

PRESETS = {
    "small": {"dim": 1024, "heads": 16, "layers": 24, "seconds": 10.0, "batch": 8, "text_len": 32,
              "dtype": "bfloat16", "decoding_steps": "20,10,10,10"},
    "tiny": {"dim": 128, "heads": 4, "layers": 2, "seconds": 2.0, "batch": 2, "text_len": 8,
             "dtype": "float32", "decoding_steps": "4,2,2,2"},
}
# Dense bf16 peak FLOP/s per GPU (SXM parts; tensor cores, no sparsity). TPUs: training.metrics.PEAK_FLOPS.
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12,
                 "L40S": 362e12, "L4": 121e12, "A10": 125e12, "V100": 125e12}

flags.DEFINE_enum("preset", "auto", ["auto", "small", "tiny"], "shape preset (auto: small on GPU/TPU, tiny on CPU)")
for _name, _kind in (("dim", "integer"), ("heads", "integer"), ("layers", "integer"), ("batch", "integer"),
                     ("text_len", "integer")):
    getattr(flags, f"DEFINE_{_kind}")(_name, None, f"override the preset's {_name}")
flags.DEFINE_float("seconds", None, "override the preset's window (s, 50 Hz)")
flags.DEFINE_string("dtype", None, "compute dtype override (float32 / bfloat16)")
flags.DEFINE_string("decoding_steps", None, "override the preset's decoding steps, e.g. 20,10,10,10")
flags.DEFINE_list("impls", [], "attention impls to run (default: every one this backend runs)")
flags.DEFINE_integer("reps", 3, "timed repetitions (min reported)")
flags.DEFINE_bool("remat", False, "per-layer remat in the train step")
flags.DEFINE_bool("generate", True, "time generation too")
flags.DEFINE_float("peak_tflops", 0.0, "device peak TFLOP/s for MFU (0 = from the device kind / measured on CPU)")
flags.DEFINE_string("out", None, "JSON output path")
FLAGS = flags.FLAGS


def settings(backend: str) -> dict:
    s = dict(PRESETS["tiny" if FLAGS.preset == "auto" and backend == "cpu" else
                      ("small" if FLAGS.preset == "auto" else FLAGS.preset)])
    for k in s:
        if getattr(FLAGS, k) is not None:
            s[k] = getattr(FLAGS, k)
    s["decoding_steps"] = tuple(int(x) for x in str(s["decoding_steps"]).split(","))
    return s


def default_impls(backend: str) -> list[str]:
    return ["xla", "dot_product_attention"] + (["splash"] if backend == "tpu" else [])


def peak_flops() -> tuple[float, str]:
    import jax

    from magnet_jax.training.metrics import PEAK_FLOPS, peak_flops_per_device
    if FLAGS.peak_tflops > 0:
        return FLAGS.peak_tflops * 1e12, "--peak_tflops"
    kind = jax.devices()[0].device_kind
    for name, f in {**PEAK_FLOPS, **GPU_PEAK_BF16}.items():
        if name in kind:
            return f, f"bf16 dense peak of {name}"
    return peak_flops_per_device(), "measured fp32 matmul peak (CPU, best GEMM run)"


def device_peak_bytes() -> int | None:
    import jax
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def main(_):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from magnet_jax import sharding
    from magnet_jax.configs import get_config
    from magnet_jax.decoding import GenerationConfig
    from magnet_jax.decoding.inputs import prepare_inputs
    from magnet_jax.decoding.magnet import _decode
    from magnet_jax.model import MagnetConfig, MagnetLM
    from magnet_jax.model.attention import resolve_impl
    from magnet_jax.sharding import batch_shardings
    from magnet_jax.training import TrainConfig
    from magnet_jax.training import state as S
    from magnet_jax.training.metrics import train_flops_per_step
    from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
    from magnet_jax.training.step import make_train_step

    backend = jax.default_backend()
    st = settings(backend)
    impls = FLAGS.impls or default_impls(backend)
    for i in impls:
        resolve_impl(i)                                  # refuse up front, one line
    base = MagnetConfig(dim=st["dim"], num_heads=st["heads"], num_layers=st["layers"],
                        segment_duration=st["seconds"], remat=FLAGS.remat)
    B, T, Stxt = st["batch"], base.segment_frames, st["text_len"]
    peak, peak_basis = peak_flops()
    print(f"backend {backend} ({jax.devices()[0].device_kind}, {jax.device_count()} devices)  shape {st}  "
          f"T={T}  peak {peak / 1e9:.0f} GFLOP/s ({peak_basis})", flush=True)

    t0 = time.perf_counter()
    lm0 = MagnetLM(base, rngs=nnx.Rngs(0))
    _, params_state = nnx.split(lm0)
    init_s = time.perf_counter() - t0

    def graphdef(**kw):
        return nnx.split(nnx.eval_shape(lambda: MagnetLM(base.replace(**kw), rngs=nnx.Rngs(0))))[0]

    rs = np.random.RandomState(0)
    codes = jnp.asarray(rs.randint(0, base.card, (B, base.n_q, T)), jnp.int32)
    codes = codes.at[:, 2:].set(base.mask_id)
    hidden = jnp.asarray(rs.randn(B, Stxt, base.text_dim), jnp.float32)
    tmask = jnp.ones((B, Stxt), jnp.int32).at[0, Stxt // 2:].set(0)
    fwd = jax.jit(lambda gd, s, stage: nnx.merge(gd, s)(codes, hidden, tmask, stage=stage), static_argnums=(0, 2))

    # ---------------- parity vs "xla" (same weights): in float32 and in the compute dtype
    ref = {(dt, stage): np.asarray(fwd(graphdef(dtype=dt), params_state, stage))
           for dt in sorted({"float32", st["dtype"]}) for stage in (0, 1)}
    results = {}
    for impl in impls:
        r = results[impl] = {"resolved": resolve_impl(impl)}
        for dt in sorted({"float32", st["dtype"]}):
            for stage in (0, 1):
                out = np.asarray(fwd(graphdef(dtype=dt, attention_impl=impl), params_state, stage))
                r[f"logits_max_abs_diff_{dt}_stage{stage}"] = float(np.abs(out - ref[(dt, stage)]).max())
                if dt != "float32":
                    r[f"logits_max_abs_diff_{dt}_vs_fp32_xla_stage{stage}"] = float(
                        np.abs(out - ref[("float32", stage)]).max())
                r["finite"] = bool(r.get("finite", True) and np.isfinite(out).all())
        print(f"{impl:22s} parity " + "  ".join(f"{k[len('logits_max_abs_diff_'):]}={v:.2e}"
                                                for k, v in r.items() if k.startswith("logits_max")), flush=True)

    fwd_flops = train_flops_per_step(base, B, T, Stxt) / 3
    train_flops = 3 * fwd_flops
    # ---------------- timings per impl, in the compute dtype
    c = get_config("tiny")
    c.update({"batch_size": B, "learning_rate": 1e-4, "warmup_steps": 10, "cfg_dropout": 0.0})
    tcfg = TrainConfig.from_config(c)
    mesh = sharding.make_mesh(data=-1)
    keys = ("codes", "padding_mask", "text_hidden", "text_mask")
    full_codes = jnp.asarray(rs.randint(0, base.card, (B, base.n_q, T)), jnp.int32)
    gcfg = GenerationConfig.music(st["seconds"], decoding_steps=st["decoding_steps"])
    for impl in impls:
        r = results[impl]
        mcfg = base.replace(dtype=st["dtype"], attention_impl=impl)
        gd = graphdef(dtype=st["dtype"], attention_impl=impl)
        # forward: the active stage's head (what training and decoding run)
        head = jax.jit(lambda s, gd=gd: nnx.merge(gd, s).stage_logits(codes, hidden, tmask, jnp.asarray(1)))
        t0 = time.perf_counter()
        compiled = head.lower(params_state).compile()
        r["forward"] = {"compile_s": time.perf_counter() - t0, "memory": xla_memory(compiled)}
        r["forward"]["s"] = timeit(lambda: compiled(params_state).block_until_ready(), FLAGS.reps)
        r["forward"]["mfu"] = fwd_flops / r["forward"]["s"] / peak / jax.device_count()
        # train step: the real one (span masking, loss, backward, clip, AdamW, EMA, non-finite guard)
        _, params, pspecs = S.split_model(nnx.merge(gd, params_state))
        tx = make_optimizer(tcfg.optim)
        specs = S.state_specs(tx, params, pspecs)
        state = S.init_state(tx, params, specs, mesh)
        step = make_train_step(gd, None, tcfg.step, tx, make_schedule(tcfg.optim), mcfg, specs, mesh, keys,
                               update_bound=finite_update_bound(tcfg.optim))
        batch = jax.device_put({"codes": full_codes, "padding_mask": jnp.ones((B, T), bool), "text_hidden": hidden,
                                "text_mask": tmask}, batch_shardings(keys, mesh))
        with sharding.use_mesh(mesh):
            t0 = time.perf_counter()
            cstep = step.lower(state, batch, None, jax.random.PRNGKey(0)).compile()
            r["train_step"] = {"compile_s": time.perf_counter() - t0, "memory": xla_memory(cstep)}
            holder = {"state": state}

            def one_step():
                holder["state"], m = cstep(holder["state"], batch, None, jax.random.PRNGKey(0))
                jax.block_until_ready(m)
            r["train_step"]["s"] = timeit(one_step, FLAGS.reps)
        r["train_step"]["tokens_per_s"] = B * T / r["train_step"]["s"]
        r["train_step"]["mfu"] = train_flops / r["train_step"]["s"] / peak / jax.device_count()
        holder.clear()                                   # free the train state before generating
        if FLAGS.generate:
            lm = nnx.merge(gd, params_state)
            th, tm, known, keep = prepare_inputs(lm.config, np.asarray(hidden), np.asarray(tmask), None, None, None,
                                                 None, T, None, gcfg)
            g_gd, g_state = nnx.split(lm)
            t0 = time.perf_counter()
            cgen = _decode.lower(g_gd, gcfg, g_state, th, tm, known, keep, jax.random.key(0)).compile()
            r["generate"] = {"compile_s": time.perf_counter() - t0, "memory": xla_memory(cgen)}
            r["generate"]["s"] = timeit(lambda: jax.block_until_ready(
                cgen(g_state, th, tm, known, keep, jax.random.key(1))), max(1, FLAGS.reps - 1))
            gen_flops = sum(gcfg.decoding_steps) * train_flops_per_step(base, 2 * B, T, Stxt) / 3
            r["generate"]["mfu"] = gen_flops / r["generate"]["s"] / peak / jax.device_count()
            r["generate"]["seconds_of_audio_per_s"] = B * st["seconds"] / r["generate"]["s"]
        print(f"{impl:22s} fwd {r['forward']['s'] * 1e3:8.1f} ms (MFU {100 * r['forward']['mfu']:.1f}%)  "
              f"train step {r['train_step']['s'] * 1e3:8.1f} ms (MFU {100 * r['train_step']['mfu']:.1f}%, "
              f"{r['train_step']['tokens_per_s']:.0f} tok/s)"
              + (f"  generate {r['generate']['s']:.3f} s (MFU {100 * r['generate']['mfu']:.1f}%)"
                 if "generate" in r else ""), flush=True)
    r0 = results.get("xla")
    if r0:
        for impl, r in results.items():
            r["speedup_vs_xla"] = {k: r0[k]["s"] / r[k]["s"] for k in ("forward", "train_step", "generate") if k in r}
    payload = {"backend": backend, "device_kind": jax.devices()[0].device_kind, "devices": jax.device_count(),
               "jax": jax.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "shape": {**st, "frames": T}, "decoding": dataclasses.asdict(gcfg), "peak_flops": peak,
               "peak_basis": peak_basis, "model_flops": {"forward": fwd_flops, "train_step": train_flops},
               "init_s": init_s, "device_peak_bytes_in_use": device_peak_bytes(), "results": results}
    write_json(f"accelerator_{backend}", payload, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
