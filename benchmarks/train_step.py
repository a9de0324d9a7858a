"""Train step throughput: magnet-jax's sharded step vs audiocraft's (forward + backward + clip +
AdamW, same shapes, same weights), same machine, one run. Ours runs twice: with the layers scanned (the
config's default, ``magnet_jax``) and looped (``scan_layers=False``, ``magnet_jax_layer_loop``). Prints the mean
step time over ``--reps`` steps, the sides alternating in blocks of steps (ours samples a stage per step, as
training does; audiocraft's step costs the same at any stage), tokens/s, model FLOP utilisation, compile time and
the ratios; writes benchmarks/results/train_step.json.

  python -m benchmarks.train_step [--dim 512 --heads 8 --layers 8 --frames 500 --batch 4]

Both sides get the same precomputed text hidden states (the frozen T5 is not part of the step).
MFU uses the model-FLOPs count of magnet_jax.training.metrics and this host's fp32 matmul peak: the best
single GEMM run at the LM's shapes, through XLA or torch, whichever is faster (``common.host_matmul_peak``).
Peak memory: ours from XLA's buffer assignment of the compiled step (``temp`` = activations, grads,
scratch; ``peak`` = + state and batch), audiocraft's from torch.profiler's allocation events during a step
(``step_extra``) plus its parameters and AdamW state. ``--max_batch_gb=24`` also searches the largest batch
whose step fits in that budget (ours: compiled, exact; audiocraft: linear in the batch from two measured steps).
"""
from __future__ import annotations

from absl import app, flags

from benchmarks.common import (
    define_lm_flags,
    host_matmul_peak,
    largest_batch,
    machine,
    reference_and_ours,
    reference_stage1_loss,
    stage1_batch,
    tensor_bytes,
    timeit_interleaved,
    torch_peak_extra_bytes,
    write_json,
    xla_memory,
)

define_lm_flags(batch=4, reps=8)
flags.DEFINE_float("max_batch_gb", 0.0, "also search the largest batch whose step fits in this many GB (0 = off)")
FLAGS = flags.FLAGS


def main(_):
    import time

    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from magnet_jax import sharding
    from magnet_jax.configs import get_config
    from magnet_jax.model import MagnetLM
    from magnet_jax.sharding import batch_shardings
    from magnet_jax.training import TrainConfig
    from magnet_jax.training import state as S
    from magnet_jax.training.metrics import train_flops_per_step
    from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
    from magnet_jax.training.step import make_train_step

    ref, lm = reference_and_ours(FLAGS)
    ref.train()
    B, T, St = FLAGS.batch, FLAGS.frames, FLAGS.text_len
    c = get_config("tiny")
    c.update({"batch_size": B, "learning_rate": 1e-4, "warmup_steps": 10, "cfg_dropout": 0.0})
    cfg = TrainConfig.from_config(c)
    b = stage1_batch(B, T, St)
    codes, hidden, tmask = b["codes"], b["hidden"], b["tmask"]

    # ---------------- audiocraft: MagnetSolver-style step (loss, backward, clip, AdamW) on a stage-1 batch
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8)

    def ref_step():
        opt.zero_grad(set_to_none=True)
        loss = reference_stage1_loss(ref, b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        return loss

    # ---------------- magnet-jax: the real train step (masking sampled inside, like training), with the layers
    # scanned (the config's default) and looped (scan_layers=False: transformer.over_layers)
    mesh = sharding.make_mesh(data=-1)
    keys = ("codes", "padding_mask", "text_hidden", "text_mask")
    batch = jax.device_put({"codes": jnp.asarray(codes.numpy()), "padding_mask": jnp.ones((B, T), bool),
                            "text_hidden": jnp.asarray(hidden.numpy()), "text_mask": jnp.asarray(tmask.numpy())},
                           batch_shardings(keys, mesh))
    tx = make_optimizer(cfg.optim)
    ours = {"magnet_jax": dict(scan_layers=True), "magnet_jax_layer_loop": dict(scan_layers=False)}
    steps, holders, compile_s = {}, {}, {}
    params = S.split_model(lm)[1]                                         # the same weights for both
    for name, over in ours.items():
        mcfg = lm.config.replace(**over)
        graphdef, _, pspecs = S.split_model(nnx.eval_shape(lambda mcfg=mcfg: MagnetLM(mcfg, rngs=nnx.Rngs(0))))
        specs = S.state_specs(tx, params, pspecs)
        steps[name] = make_train_step(graphdef, None, cfg.step, tx, make_schedule(cfg.optim), mcfg, specs, mesh,
                                      keys, update_bound=finite_update_bound(cfg.optim))
        holders[name] = {"state": S.init_state(tx, params, specs, mesh), "stages": []}
        t0 = time.perf_counter()
        with sharding.use_mesh(mesh):
            steps[name].lower(holders[name]["state"], batch, None, jax.random.PRNGKey(0)).compile()
        compile_s[name] = time.perf_counter() - t0

    def our_step(name):
        def run():
            h = holders[name]
            with sharding.use_mesh(mesh):
                h["state"], m = steps[name](h["state"], batch, None, jax.random.PRNGKey(0))
            h["stages"].append(int(jax.block_until_ready(m)["stage"]))
        return run

    # Mean over consecutive steps: ours samples a stage per step like training (stage 0 attends fully, the
    # others on the band only, so a step's cost depends on its stage; both layer modes see the same stages);
    # audiocraft's costs the same at any stage. The sides alternate in blocks of steps, so a drift of the
    # machine's speed hits all alike.
    t = timeit_interleaved({"audiocraft": ref_step, **{k: our_step(k) for k in ours}}, FLAGS.reps)
    stages = holders["magnet_jax"]["stages"]  # every step run, the first of each block (not timed) included

    # ---------------- peak memory (after the timed steps: AdamW state exists on both sides)
    ref_persistent = tensor_bytes(list(ref.parameters())) + tensor_bytes(list(opt.state.values()))
    ref_extra = torch_peak_extra_bytes(ref_step)

    def ours_memory(batch_size, name="magnet_jax"):
        shapes = {k: jax.ShapeDtypeStruct((batch_size,) + v.shape[1:], v.dtype, sharding=v.sharding)
                  for k, v in batch.items()}
        with sharding.use_mesh(mesh):
            return xla_memory(steps[name].lower(holders[name]["state"], shapes, None, jax.random.PRNGKey(0)).compile())
    mem = {**{k: ours_memory(B, k) for k in ours},
           "audiocraft": {"params_and_adamw_bytes": ref_persistent, "step_extra_bytes": ref_extra,
                          "peak_bytes": ref_persistent + ref_extra}}
    mcfg = lm.config
    flops = train_flops_per_step(mcfg, B, T, St)
    matmul_peak = host_matmul_peak()
    peak = matmul_peak["peak"]
    t_ref = t["audiocraft"][0]
    res = {"audiocraft": {"step_s": t_ref, "min_step_s": t["audiocraft"][1], "tokens_per_s": B * T / t_ref,
                          "mfu": flops / t_ref / peak},
           **{k: {"step_s": t[k][0], "min_step_s": t[k][1], "tokens_per_s": B * T / t[k][0],
                  "mfu": flops / t[k][0] / peak, "speedup": t_ref / t[k][0], "compile_s": compile_s[k],
                  "model": ours[k]} for k in ours},
           "stages": stages, "speedup": t_ref / t["magnet_jax"][0], "model_flops_per_step": flops,
           "host_peak_flops": peak, "host_matmul_peak": matmul_peak, "memory": mem}
    if FLAGS.max_batch_gb > 0:
        budget = FLAGS.max_batch_gb * 2 ** 30
        extra_at = {}
        for bb in (1, 2):   # audiocraft's step memory is linear in the batch: fit it from two measured steps
            sb = stage1_batch(bb, T, St, seed=1)
            extra_at[bb] = torch_peak_extra_bytes(lambda sb=sb: (opt.zero_grad(set_to_none=True),
                                                                 reference_stage1_loss(ref, sb).backward(),
                                                                 opt.step()))
        slope = extra_at[2] - extra_at[1]
        ref_at = lambda bb: ref_persistent + extra_at[1] + slope * (bb - 1)
        res["largest_batch"] = {"budget_gb": FLAGS.max_batch_gb,
                                **{k: largest_batch(lambda bb, k=k: ours_memory(bb, k)["peak_bytes"], budget)
                                   for k in ours},
                                "audiocraft_estimate": largest_batch(ref_at, budget)}
    cfgd = {"dim": FLAGS.dim, "heads": FLAGS.heads, "layers": FLAGS.layers, "frames": T, "batch": B}
    print(f"config {cfgd}  host fp32 matmul peak {peak / 1e9:.0f} GFLOP/s (XLA {matmul_peak['xla'] / 1e9:.0f}, "
          f"torch {matmul_peak['torch'] / 1e9:.0f})  (mean of {FLAGS.reps} steps; ours sampled "
          f"stages {stages})")
    for k in ("audiocraft", *ours):
        extra = f"  x{res[k]['speedup']:.2f}  compile {res[k]['compile_s']:.1f} s" if k in ours else ""
        print(f"{k:21s} {res[k]['step_s'] * 1e3:8.1f} ms/step  {res[k]['tokens_per_s']:9.0f} tokens/s  "
              f"MFU {100 * res[k]['mfu']:.1f}%{extra}")
    for k in ours:
        print(f"peak memory: {k} {mem[k].get('peak_bytes', 0) / 2**20:.0f} MiB (step temporaries "
              f"{mem[k].get('temp_size_in_bytes', 0) / 2**20:.0f} MiB)")
    print(f"peak memory: audiocraft {mem['audiocraft']['peak_bytes'] / 2**20:.0f} MiB (step extra "
          f"{ref_extra / 2**20:.0f} MiB)")
    if "largest_batch" in res:
        print(f"largest batch in {FLAGS.max_batch_gb} GB: {res['largest_batch']}")
    write_json("train_step", {"config": cfgd, "machine": machine(), "results": res}, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
