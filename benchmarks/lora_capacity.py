"""The largest released model that fine-tunes in a host-memory budget (default 24 GiB): full fine-tuning vs LoRA.

  python -m benchmarks.lora_capacity [--configs=magnet_small_10secs,...,magnet_medium_30secs] \
      [--rank=8] [--budget_gib=24] [--search_batch] [--time_budget_s=2400]

For each released architecture and each mode (every weight trained; LoRA rank ``--rank`` on the default targets),
the trainer's real train step (``training.step.make_train_step``, built by ``benchmarks.tpu_compile.lm_programs``
exactly as ``training.loop`` builds it: the frozen T5 inside the step on ``text_ids``, span masking, loss,
backward, clipping, AdamW, the non-finite guard, EMA; fp32 master weights and float32 compute, remat off
(``--remat=false`` by default: a single-host fine-tune; the released configs' pod default is on), the state
donated; LoRA: the adapters in the state, the base a frozen input of the step) is compiled ahead of time for this
host's CPU backend with abstract inputs (``jax.ShapeDtypeStruct`` / ``nnx.eval_shape``: no weight is
allocated). Memory is XLA's buffer assignment of the compiled program (``compiled.memory_analysis()``): peak =
arguments (train state, frozen base, T5, batch) + outputs + temporaries - aliased (donated). It is the program's
memory, not the process's (Python, the runtime, the input pipeline and the host copy of a checkpoint come on top).

Batch 1 per (config, mode) first, then (``--search_batch``, while ``--time_budget_s`` of compile time is left) the
largest batch whose step fits the budget (compiles by doubling, then interpolation / bisection:
``tpu_compile.largest_batch``). Writes ``benchmarks/results/lora_capacity.json`` (with this machine and the date)
after every compile; ``python -m benchmarks.tables lora_capacity`` prints its table.
"""
from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import time  # noqa: E402

from absl import app, flags  # noqa: E402

from benchmarks.tpu_compile import Target, largest_batch, lm_programs, try_compile  # noqa: E402  (defines its flags)

GiB = 1 << 30
flags.DEFINE_list("configs", ["magnet_small_10secs", "magnet_small_30secs", "magnet_medium_10secs",
                              "magnet_medium_30secs"], "released architectures (configs/magnet.py), smallest first")
flags.DEFINE_integer("rank", 8, "LoRA rank (alpha: the config's default, 16)")
flags.DEFINE_float("budget_gib", 24.0, "the memory budget, GiB")
flags.DEFINE_float("time_budget_s", 2400.0, "compile time of the whole run: no new config / search starts after it")
flags.DEFINE_string("out", None, "JSON output (default benchmarks/results/lora_capacity.json)")
FLAGS = flags.FLAGS          # also tpu_compile's --remat (config / true / false) and --search_batch
FLAGS.set_default("remat", "false")
MODES = (("full", 0), ("lora", None))     # None: --rank


def cpu_target(budget_bytes: int):
    """This host's first CPU device as a :class:`benchmarks.tpu_compile.Target` with ``budget_bytes`` of memory."""
    import jax
    dev = jax.devices("cpu")[:1]
    kw = {"backend": "cpu"} if "backend" in Target.__dataclass_fields__ else {}    # traced for the CPU
    return Target(topology="cpu", num_slices=1, devices=dev, device_kind=dev[0].device_kind, hbm_bytes=budget_bytes,
                  **kw)


def main(argv):
    del argv
    from benchmarks.common import machine, write_json  # here: benchmarks.common re-executes with tcmalloc
    budget = int(FLAGS.budget_gib * GiB)
    target = cpu_target(budget)
    t_start = time.perf_counter()
    rows, skipped = [], []
    payload = {"budget_bytes": budget, "machine": machine(), "rows": rows, "skipped": skipped,
               "settings": {"dtype": "float32", "master_weights": "float32", "attention_impl": "xla",
                            "remat": FLAGS.remat, "rank": FLAGS.rank, "backend": "cpu"}}

    def save():
        payload["compile_s_total"] = round(time.perf_counter() - t_start, 1)
        write_json("lora_capacity", payload, FLAGS.out)

    def out_of_time():
        return time.perf_counter() - t_start > FLAGS.time_budget_s

    lowers = {}
    for name in FLAGS.configs:                     # batch 1, both modes, every config (the headline)
        for mode, rank in MODES:
            if out_of_time():
                skipped.append({"config": name, "mode": mode, "why": f"compile-time budget of "
                                f"{FLAGS.time_budget_s:.0f} s spent"})
                print(f"skip {name} {mode}: time budget spent", flush=True)
                save()
                continue
            progs, info = lm_programs(name, target, dtype="float32", attention_impl="xla", remat=FLAGS.remat,
                                      batch=1, lora_rank=FLAGS.rank if rank is None else 0)
            r = try_compile(progs["train"], 1, 1)
            lowers[(name, mode)] = progs["train"]
            row = {"config": name, "mode": mode, "lora": info["lora"], "params": info["params"],
                   "trainable_params": info["trainable_params"], "frames": info["frames"],
                   "text_len": info["text_len"], "t5": info["t5"], "remat": info["remat"], "batch": 1,
                   "memory": r.get("memory"), "peak_bytes": r["per_device_bytes"],
                   "fits": r["per_device_bytes"] is not None and r["per_device_bytes"] <= budget,
                   "compile_s": round(r["compile_s"], 1)}
            rows.append(row)
            print(f"{name} {mode}: batch 1 peak {row['peak_bytes'] / GiB:.2f} GiB (fits {row['fits']}), compile "
                  f"{row['compile_s']:.0f} s", flush=True)
            save()
    if FLAGS.search_batch:                          # then the largest batch, cheapest programs first
        for row in sorted(rows, key=lambda r: r["compile_s"]):
            if not row["fits"]:
                row["largest_batch"] = {"batch": 0, "complete": True}
                continue
            left = FLAGS.time_budget_s - (time.perf_counter() - t_start)
            if left < 3 * row["compile_s"]:
                row["largest_batch"] = {"batch": None, "complete": False, "why": "compile-time budget spent"}
                save()
                continue
            lb = largest_batch(lowers[(row["config"], row["mode"])], 1, budget, 1, {1: row["peak_bytes"]}, left)
            row["largest_batch"] = lb
            print(f"{row['config']} {row['mode']}: largest batch {lb['batch']} (complete {lb['complete']}, "
                  f"{lb['search_s']:.0f} s)", flush=True)
            save()
    save()


if __name__ == "__main__":
    app.run(main)
