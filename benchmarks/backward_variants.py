"""Forward + backward of the MAGNeT training loss: audiocraft vs magnet-jax run-time variants (default, layers
unrolled instead of scanned, per-layer remat), same weights, same process, alternating blocks of runs (min reported).
``--threads=1`` pins both sides to one thread (XLA: no Eigen pool), which keeps ratios meaningful on a loaded
machine. Also the minor page faults per call (the allocator's share: see magnet_jax.util.allocator).
Writes benchmarks/results/backward_variants.json.

  python -m benchmarks.backward_variants [--dim 256 --layers 4 --heads 4 --frames 500 --batch 2 --threads 1]
"""
from __future__ import annotations

import os
import resource
import sys

if "--threads=1" in sys.argv or ("--threads" in sys.argv and sys.argv[sys.argv.index("--threads") + 1] == "1"):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

from absl import app, flags  # noqa: E402

from benchmarks.common import (  # noqa: E402
    define_lm_flags,
    machine,
    reference_and_ours,
    reference_stage1_loss,
    stage1_batch,
    timeit_interleaved,
    write_json,
)

define_lm_flags(batch=2)
FLAGS = flags.FLAGS


def main(_):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from magnet_jax.model import MagnetLM
    from magnet_jax.objectives import magnet as masking

    ref, lm = reference_and_ours(FLAGS)
    ref.train()
    B, T, S = FLAGS.batch, FLAGS.frames, FLAGS.text_len
    b = stage1_batch(B, T, S)
    jh, jm = jnp.asarray(b["hidden"].numpy()), jnp.asarray(b["tmask"].numpy())
    batch = {"inputs": jnp.asarray(b["inputs"].numpy()), "stage": jnp.asarray(1),
             "targets": jnp.asarray(b["codes"][:, 1].numpy()), "weights": jnp.asarray(b["mask"].numpy()),
             "text_mask": jm}
    _, state = nnx.split(lm)

    def ref_step():
        ref.zero_grad(set_to_none=True)
        reference_stage1_loss(ref, b).backward()

    def variant(**over):
        gd = nnx.split(nnx.eval_shape(lambda: MagnetLM(lm.config.replace(**over), rngs=nnx.Rngs(0))))[0]
        f = jax.jit(jax.value_and_grad(lambda s: masking.loss_from_batch(nnx.merge(gd, s), batch, jh)[0]))
        f(state)
        return lambda: jax.block_until_ready(f(state))

    L = lm.config.num_layers
    fns = {"audiocraft": ref_step, "default (scan)": variant(), f"scan_unroll={L}": variant(scan_unroll=L),
           "remat": variant(remat=True), f"remat + scan_unroll={L}": variant(remat=True, scan_unroll=L)}
    # Alternating blocks of runs per variant (the first run of each block not counted: it pays the switch,
    # e.g. torch's OpenMP workers still spinning after its last op, which slows the next side by ~10 %).
    best = {k: v[1] for k, v in timeit_interleaved(fns, FLAGS.reps, block=3).items()}
    faults = {}                                      # minor page faults per call (fresh pages the kernel zeroes)
    for k, f in fns.items():
        f()
        m0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f()
        faults[k] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - m0
    res = {k: {"s": v, "speedup_vs_audiocraft": best["audiocraft"] / v, "minor_page_faults": int(faults[k])}
           for k, v in best.items()}
    cfg = {"dim": FLAGS.dim, "heads": FLAGS.heads, "layers": L, "frames": T, "batch": B, "threads": FLAGS.threads}
    print(f"config {cfg}")
    for k, v in res.items():
        print(f"{k:28s} {v['s'] * 1e3:9.0f} ms   x{v['speedup_vs_audiocraft']:.2f} vs audiocraft   "
              f"{v['minor_page_faults']:7d} minor page faults")
    write_json("backward_variants", {"config": cfg, "machine": machine(), "results": res}, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
