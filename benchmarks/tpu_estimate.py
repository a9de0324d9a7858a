"""Memory / throughput estimate for training the released MAGNeT sizes on TPU v4 slices (FSDP).

  python -m benchmarks.tpu_estimate [--mfu 0.4] [--markdown]

Per chip, FSDP over all chips: params fp32 (4 B), Adam moments (8 B), EMA (4 B), gradients (4 B,
transient) = 20 B/param / chips. Activations (bf16 compute, per-layer remat): the layer inputs
(L x b x T x D x 2 B) plus one layer's working set during recompute (about b x T x (14 D + 2 F) x 2 B
plus fp32 attention scores b x H x T x T x 4 B, twice for softmax + grad). Step time: model FLOPs
(``magnet_jax.training.metrics.train_flops_per_step``) / (chips x 275 TFLOP/s x MFU).
"""
from __future__ import annotations

from absl import app, flags

from benchmarks.common import write_json

flags.DEFINE_float("mfu", 0.4, "assumed model FLOP utilisation")
flags.DEFINE_boolean("markdown", True, "print a markdown table")
FLAGS = flags.FLAGS

SLICES = {"v4-8": 4, "v4-32": 16, "v4-128": 64}
RUNS = [("magnet_small_10secs", 576), ("magnet_small_30secs", 192), ("magnet_medium_10secs", 576),
        ("magnet_medium_30secs", 192)]
HBM = 32e9


def main(_):
    from flax import nnx

    from magnet_jax.configs import get_config, model_config
    from magnet_jax.model import MagnetLM, num_params
    from magnet_jax.training.metrics import PEAK_FLOPS, train_flops_per_step

    rows = []
    for name, batch in RUNS:
        mc = model_config(get_config(name))
        n = num_params(nnx.eval_shape(lambda: MagnetLM(mc)))
        T, D, L, F, H = mc.segment_frames, mc.dim, mc.num_layers, mc.ffn_dim, mc.num_heads
        flops = train_flops_per_step(mc, batch, T, 64)
        for sl, chips in SLICES.items():
            b = batch / chips
            state = 20 * n / chips
            act = L * b * T * D * 2 + b * T * (14 * D + 2 * F) * 2 + 2 * b * H * T * T * 4
            t = flops / (chips * PEAK_FLOPS["TPU v4"] * FLAGS.mfu)
            rows.append({"model": name, "params_M": round(n / 1e6, 1), "global_batch": batch, "frames": T,
                         "slice": sl, "chips": chips, "state_GB_per_chip": round(state / 1e9, 2),
                         "activations_GB_per_chip": round(act / 1e9, 2),
                         "fits_32GB": bool(state + act < 0.9 * HBM), "step_s": round(t, 2),
                         "tokens_per_s": round(batch * T / t)})
    if FLAGS.markdown:
        print(f"| model | params | batch x frames | slice (chips) | params+opt+EMA+grads GB/chip | activations GB/chip"
              f" | fits 32 GB | step s @ {int(FLAGS.mfu * 100)}% MFU | tokens/s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['params_M']}M | {r['global_batch']} x {r['frames']} "
                  f"| {r['slice']} ({r['chips']})"
                  f" | {r['state_GB_per_chip']} | {r['activations_GB_per_chip']} | {'yes' if r['fits_32GB'] else 'no'}"
                  f" | {r['step_s']} | {r['tokens_per_s']:,} |")
    write_json("tpu_estimate", {"mfu": FLAGS.mfu, "rows": rows})


if __name__ == "__main__":
    app.run(main)
