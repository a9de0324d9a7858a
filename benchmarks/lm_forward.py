"""MagnetLM forward and forward+backward vs audiocraft's MagnetLMModel, same config and weights,
same machine, one run. Prints the ratios and writes benchmarks/results/lm_forward.json.

  python -m benchmarks.lm_forward [--dim 512 --heads 8 --layers 8 --frames 500 --batch 2]

The default shape is a 10 s clip (500 frames) as one CFG batch (2 rows) through a 512-dim 8-layer
model: compute-bound on CPU, like the real models.
"""
from __future__ import annotations

import tempfile

from absl import app, flags


from benchmarks.common import machine, timeit, write_json

flags.DEFINE_integer("dim", 512, "model dim")
flags.DEFINE_integer("heads", 8, "attention heads")
flags.DEFINE_integer("layers", 8, "transformer layers")
flags.DEFINE_integer("frames", 500, "sequence length T (50 Hz frames)")
flags.DEFINE_integer("batch", 2, "batch size")
flags.DEFINE_integer("text_len", 12, "text tokens")
flags.DEFINE_integer("reps", 3, "timed repetitions (min is reported)")
flags.DEFINE_integer("threads", 0, "torch intra-op threads (0 = number of cores)")
flags.DEFINE_string("out", None, "JSON output path")
FLAGS = flags.FLAGS


def main(_):
    import os
    import numpy as np
    import torch
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from tests.reference import magnet_ref as R
    from magnet_jax import masking
    from magnet_jax.convert import load_audiocraft_lm

    torch.set_num_threads(FLAGS.threads or os.cpu_count())
    B, T, S = FLAGS.batch, FLAGS.frames, FLAGS.text_len
    seg = max(1, -(-T // 50))
    xp = R.magnet_xp_cfg(dim=FLAGS.dim, num_heads=FLAGS.heads, num_layers=FLAGS.layers, segment_duration=seg)
    folder = tempfile.mkdtemp()
    R.make_checkpoint(folder, xp)
    ref = R.load_reference(folder)
    ours = load_audiocraft_lm(folder, cache=False)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 2048, (B, 4, T), generator=g)
    codes[:, 2:] = 2048
    hidden = torch.randn(B, S, 768, generator=g)
    tmask = torch.ones(B, S, dtype=torch.long)
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
    stage = 1
    mask = torch.rand(B, T, generator=g) < 0.5
    inp = codes.clone()
    inp[:, 1][mask] = 2048
    tgt = codes[:, 1].clone()
    tgt[~mask] = -1
    ref.train()

    def ref_step():
        ref.zero_grad(set_to_none=True)
        ct = R.condition_tensors(ref, hidden, tmask)
        out = ref(inp, [], ct, stage=stage)
        loss = torch.nn.functional.cross_entropy(out[:, stage].reshape(-1, 2048), tgt.reshape(-1), ignore_index=-1)
        loss.backward()
        return loss
    # audiocraft's conditioner runs under no_grad only when not finetuning: keep its output_proj trainable
    batch = {"inputs": jnp.asarray(inp.numpy()), "stage": stage, "targets": jnp.asarray(codes[:, 1].numpy()),
             "weights": jnp.asarray(mask.numpy()), "text_mask": jm}

    @jax.jit
    def our_step(s):
        def f(s):
            return masking.loss_from_batch(nnx.merge(gd, s), batch, jh)[0]
        return jax.value_and_grad(f)(s)
    t_ref = timeit(ref_step, FLAGS.reps)
    t_ours = timeit(lambda: jax.block_until_ready(our_step(state)), FLAGS.reps)
    loss_diff = abs(float(ref_step()) - float(our_step(state)[0]))
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
