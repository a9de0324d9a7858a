"""MagnetLM forward and forward+backward vs audiocraft's MagnetLMModel, same config and weights,
same machine, one run. Prints the ratios and writes benchmarks/results/lm_forward.json.

  python -m benchmarks.lm_forward [--dim 512 --heads 8 --layers 8 --frames 500 --batch 2]

The default shape is a 10 s clip (500 frames) as one CFG batch (2 rows) through a 512-dim 8-layer
model: compute-bound on CPU, like the real models.
"""
from __future__ import annotations

from absl import app, flags

from benchmarks.common import (
    define_lm_flags,
    machine,
    reference_and_ours,
    reference_stage1_loss,
    stage1_batch,
    timeit,
    write_json,
)

define_lm_flags(batch=2)
FLAGS = flags.FLAGS


def main(_):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from flax import nnx

    from magnet_jax.objectives import magnet as masking
    from tests.reference import magnet_ref as R

    ref, ours = reference_and_ours(FLAGS)
    B, T, S = FLAGS.batch, FLAGS.frames, FLAGS.text_len
    b = stage1_batch(B, T, S)
    codes, hidden, tmask = b["codes"].clone(), b["hidden"], b["tmask"]
    codes[:, 2:] = 2048
    jc, jh, jm = (jnp.asarray(x.numpy()) for x in (codes, hidden, tmask))
    gd, state = nnx.split(ours)
    results = {}

    # ---------------- forward (all K heads, as audiocraft's forward returns)
    for stage in (0, 1):
        ct = R.condition_tensors(ref, hidden, tmask)

        def ref_fwd():
            with torch.no_grad():
                return ref(codes, [], ct, stage=stage)
        fwd = jax.jit(lambda s, c, h, m, st=stage: nnx.merge(gd, s)(c, h, m, stage=st))
        head = jax.jit(lambda s, c, h, m, st=stage: nnx.merge(gd, s).stage_logits(c, h, m, st))
        t_ref = timeit(ref_fwd, FLAGS.reps)
        t_ours = timeit(lambda: fwd(state, jc, jh, jm).block_until_ready(), FLAGS.reps)
        t_head = timeit(lambda: head(state, jc, jh, jm).block_until_ready(), FLAGS.reps)
        err = float(np.abs(np.asarray(fwd(state, jc, jh, jm)) - ref_fwd().numpy()).max())
        results[f"forward_stage{stage}"] = {"audiocraft_s": t_ref, "magnet_jax_s": t_ours, "speedup": t_ref / t_ours,
                                            "magnet_jax_active_head_s": t_head, "speedup_active_head": t_ref / t_head,
                                            "max_abs_diff": err}

    # ---------------- forward + backward of the training loss (stage 1, ~50% masked)
    ref.train()

    def ref_step():
        ref.zero_grad(set_to_none=True)
        loss = reference_stage1_loss(ref, b)
        loss.backward()
        return loss
    batch = {"inputs": jnp.asarray(b["inputs"].numpy()), "stage": 1, "targets": jnp.asarray(b["codes"][:, 1].numpy()),
             "weights": jnp.asarray(b["mask"].numpy()), "text_mask": jm}

    @jax.jit
    def our_step(s):
        return jax.value_and_grad(lambda s: masking.loss_from_batch(nnx.merge(gd, s), batch, jh)[0])(s)
    t_ref = timeit(ref_step, FLAGS.reps)
    t_ours = timeit(lambda: jax.block_until_ready(our_step(state)), FLAGS.reps)
    loss_diff = abs(float(ref_step().detach()) - float(our_step(state)[0]))
    results["forward_backward_stage1"] = {"audiocraft_s": t_ref, "magnet_jax_s": t_ours, "speedup": t_ref / t_ours,
                                          "loss_abs_diff": loss_diff}

    cfg = {"dim": FLAGS.dim, "heads": FLAGS.heads, "layers": FLAGS.layers, "frames": T, "batch": B, "text_len": S}
    print(f"config {cfg}")
    for k, v in results.items():
        print(f"{k:26s} audiocraft {v['audiocraft_s'] * 1e3:8.1f} ms   magnet-jax {v['magnet_jax_s'] * 1e3:8.1f} ms"
              f"   speedup x{v['speedup']:.2f}" + (f"   (active head only x{v['speedup_active_head']:.2f})"
                                                   if "speedup_active_head" in v else ""))
    write_json("lm_forward", {"config": cfg, "machine": machine(), "results": results}, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
