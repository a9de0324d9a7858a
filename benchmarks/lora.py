"""LoRA vs full fine-tuning: the trainer's sharded step (training/step.py) at the same shape, same base weights,
same batch, one run. Per side: median / mean / min step time (the sides alternate in blocks of steps), the
compiled step's memory from XLA's buffer assignment (arguments = train state + frozen base + batch; temporaries =
activations, gradients, scratch; peak = arguments + outputs + temporaries - donated), the trainable parameters and
the bytes of the optimizer state and of the whole (checkpointed) train state. Writes benchmarks/results/lora.json.

  python -m benchmarks.lora [--dim 512 --heads 8 --layers 8 --frames 500 --batch 4 --rank 8]

LoRA: adapters on every default target (self / cross attention q, k, v, out; FFN in / out), ``alpha = 2 rank``;
the base is frozen (an input of the step, not in the optimizer, the EMA or the checkpoint), and the layers compute
``W x + s (x a) b`` (model/lora.py), so the backward forms no weight gradient of the base.
"""
from __future__ import annotations

from absl import app, flags

from benchmarks.common import define_lm_flags, interleaved_times, machine, write_json, xla_memory

define_lm_flags(batch=4, reps=8)
flags.DEFINE_integer("rank", 8, "LoRA rank")
FLAGS = flags.FLAGS


def _bytes(tree) -> int:
    import jax
    return sum(int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "dtype"))


def main(_):
    import os
    import statistics
    import time

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from magnet_jax import sharding
    from magnet_jax.configs import get_config
    from magnet_jax.model import MagnetLM
    from magnet_jax.model.config import MagnetConfig
    from magnet_jax.sharding import batch_shardings
    from magnet_jax.training import TrainConfig
    from magnet_jax.training import lora as TL
    from magnet_jax.training import state as S
    from magnet_jax.training.optim import finite_update_bound, make_optimizer, make_schedule
    from magnet_jax.training.step import make_train_step

    B, T, St = FLAGS.batch, FLAGS.frames, FLAGS.text_len
    c = get_config("tiny")
    c.update({"batch_size": B, "learning_rate": 1e-4, "warmup_steps": 10, "cfg_dropout": 0.0,
              "lora_rank": FLAGS.rank, "lora_alpha": 2.0 * FLAGS.rank})
    cfg = TrainConfig.from_config(c)
    lc = cfg.lora.adapter()
    mcfg = MagnetConfig(dim=FLAGS.dim, num_heads=FLAGS.heads, num_layers=FLAGS.layers, text_dim=768,
                        segment_duration=T / 50)
    mesh = sharding.make_mesh(data=-1)
    keys = ("codes", "padding_mask", "text_hidden", "text_mask")
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    batch = jax.device_put({"codes": jax.random.randint(k[0], (B, mcfg.n_q, T), 0, mcfg.card),
                            "padding_mask": jnp.ones((B, T), bool),
                            "text_hidden": jax.random.normal(k[1], (B, St, mcfg.text_dim)),
                            "text_mask": jnp.ones((B, St), jnp.int32)}, batch_shardings(keys, mesh))
    tx, schedule, bound = make_optimizer(cfg.optim), make_schedule(cfg.optim), finite_update_bound(cfg.optim)
    graphdef, base, bspecs = S.split_model(MagnetLM(mcfg, rngs=nnx.Rngs(0)))
    base = jax.device_put(base, S.to_shardings(bspecs, mesh))

    # full fine-tuning: every parameter trained (AdamW moments + EMA of all of them)
    full_specs = S.state_specs(tx, base, bspecs)
    full_state = S.init_state(tx, jax.tree.map(jnp.copy, base), full_specs, mesh)
    full_step = make_train_step(graphdef, None, cfg.step, tx, schedule, mcfg, full_specs, mesh, keys,
                                update_bound=bound)
    # LoRA: the adapters trained, the base a frozen input
    adapters, aspecs = TL.initial_adapters(base, bspecs, lc, 0, mesh)
    lora_specs = S.state_specs(tx, adapters, aspecs)
    lora_state = S.init_state(tx, adapters, lora_specs, mesh)
    lora_step = make_train_step(graphdef, None, cfg.step, tx, schedule, mcfg, lora_specs, mesh, keys,
                                update_bound=bound, lora=lc, base_specs=bspecs)
    sides = {"full": (full_step, full_state, ()), "lora": (lora_step, lora_state, (base,))}
    holders, compiled, compile_s = {}, {}, {}
    key = jax.random.PRNGKey(0)
    for name, (fn, st, extra) in sides.items():
        t0 = time.perf_counter()
        with sharding.use_mesh(mesh):
            compiled[name] = fn.lower(st, batch, None, key, *extra).compile()
        compile_s[name] = time.perf_counter() - t0
        holders[name] = {"state": st, "losses": []}

    def run(name):
        fn, _, extra = sides[name]

        def one():
            h = holders[name]
            with sharding.use_mesh(mesh):
                h["state"], m = fn(h["state"], batch, None, key, *extra)
            h["losses"].append(float(jax.block_until_ready(m)["loss"]))
        return one

    t = interleaved_times({name: run(name) for name in sides}, FLAGS.reps)
    n_base = sum(int(x.size) for x in jax.tree.leaves(base))
    res = {}
    for name in sides:
        st = holders[name]["state"]
        trainable = sum(int(x.size) for x in jax.tree.leaves(st.params))
        med = statistics.median(t[name])
        res[name] = {"step_s": med, "mean_step_s": statistics.mean(t[name]), "min_step_s": min(t[name]),
                     "step_times_s": t[name], "tokens_per_s": B * T / med,
                     "compile_s": compile_s[name], "trainable_params": trainable,
                     "trainable_fraction": trainable / n_base, "optimizer_state_bytes": _bytes(st.opt_state),
                     "train_state_bytes": _bytes(st), "frozen_base_bytes": _bytes(base) if name == "lora" else 0,
                     "memory": xla_memory(compiled[name]), "first_losses": holders[name]["losses"][:3]}
    f, lo = res["full"], res["lora"]
    res["ratios"] = {"step_time_lora_over_full": lo["step_s"] / f["step_s"],
                     "min_step_time_lora_over_full": lo["min_step_s"] / f["min_step_s"],
                     "temp_bytes_lora_over_full": lo["memory"].get("temp_size_in_bytes", 0)
                     / max(f["memory"].get("temp_size_in_bytes", 1), 1),
                     "peak_bytes_lora_over_full": lo["memory"].get("peak_bytes", 0)
                     / max(f["memory"].get("peak_bytes", 1), 1),
                     "optimizer_state_lora_over_full": lo["optimizer_state_bytes"] / f["optimizer_state_bytes"]}
    cfgd = {"dim": FLAGS.dim, "heads": FLAGS.heads, "layers": FLAGS.layers, "frames": T, "batch": B,
            "text_len": St, "base_params": n_base, "lora": lc.to_dict()}
    print(f"config {cfgd}  ({FLAGS.reps} steps per side, interleaved in blocks)")
    for name in sides:
        r, m = res[name], res[name]["memory"]
        mib = {k: m.get(k, 0) / 2**20 for k in ("argument_size_in_bytes", "temp_size_in_bytes", "peak_bytes")}
        print(f"{name:5s} {r['step_s'] * 1e3:8.1f} ms/step (median; mean {r['mean_step_s'] * 1e3:.1f}, min "
              f"{r['min_step_s'] * 1e3:.1f})  trainable "
              f"{r['trainable_params']:>10,d}  opt state {r['optimizer_state_bytes'] / 2**20:8.2f} MiB  train state "
              f"{r['train_state_bytes'] / 2**20:8.2f} MiB  XLA args {mib['argument_size_in_bytes']:.1f} MiB temp "
              f"{mib['temp_size_in_bytes']:.1f} MiB peak {mib['peak_bytes']:.1f} MiB")
    print("ratios (lora / full):", {k: round(v, 3) for k, v in res["ratios"].items()})
    load = os.getloadavg()      # a shared host: other processes' load inflates and scatters the step times
    write_json("lora", {"config": cfgd, "machine": machine(), "loadavg": list(load), "results": res}, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
