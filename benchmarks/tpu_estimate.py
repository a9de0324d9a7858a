"""Memory / throughput estimate for training the released MAGNeT sizes on TPU v4 slices (FSDP).

  python -m benchmarks.tpu_estimate [--mfu 0.4] [--markdown]

Per chip, FSDP over all chips: params fp32 (4 B), Adam moments (8 B), EMA (4 B), gradients (4 B,
transient) = 20 B/param / chips. Activations (bf16 compute, per-layer remat): the layer inputs
(L x b x T x D x 2 B) plus one layer's working set during recompute (about b x T x (14 D + 2 F) x 2 B
plus fp32 attention scores b x H x T x T x 4 B, twice for softmax + grad). Step time: model FLOPs
(``magnet_jax.training.metrics.train_flops_per_step``) / (chips x 275 TFLOP/s x MFU).

Arithmetic, not a compilation: ``benchmarks/tpu_compile.py`` compiles the real step for a topology and records this
estimate next to what the compiler found (:func:`estimate`; where they differ: docs/benchmarks.md).
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
ASSUMES = "FSDP over all chips, per-layer remat, bf16 compute"


def estimate(mc, n_params: int, batch: int, chips: int, *, text_len: int = 64, mfu: float = 0.4,
             hbm: float = HBM, peak: float | None = None) -> dict:
    """The estimate for model config ``mc`` (``n_params`` parameters) at global ``batch`` on ``chips`` chips, under
    its own assumptions (:data:`ASSUMES`), whatever mesh or remat a run configures."""
    from magnet_jax.training.metrics import PEAK_FLOPS, train_flops_per_step
    T, D, L, F, H = mc.segment_frames, mc.dim, mc.num_layers, mc.ffn_dim, mc.num_heads
    b = batch / chips
    state = 20 * n_params / chips
    act = L * b * T * D * 2 + b * T * (14 * D + 2 * F) * 2 + 2 * b * H * T * T * 4
    flops = train_flops_per_step(mc, batch, T, text_len)
    t = flops / (chips * (peak or PEAK_FLOPS["TPU v4"]) * mfu)
    return {"state_GB_per_chip": round(state / 1e9, 2), "activations_GB_per_chip": round(act / 1e9, 2),
            "bytes_per_chip": state + act, "fits": bool(state + act < 0.9 * hbm), "hbm_bytes": hbm,
            "step_s": round(t, 2), "tokens_per_s": round(batch * T / t), "mfu": mfu, "assumes": ASSUMES}


def main(_):
    from flax import nnx

    from magnet_jax.configs import get_config, model_config
    from magnet_jax.model import MagnetLM, num_params

    rows = []
    for name, batch in RUNS:
        mc = model_config(get_config(name))
        n = num_params(nnx.eval_shape(lambda: MagnetLM(mc)))
        for sl, chips in SLICES.items():
            e = estimate(mc, n, batch, chips, mfu=FLAGS.mfu)
            rows.append({"model": name, "params_M": round(n / 1e6, 1), "global_batch": batch,
                         "frames": mc.segment_frames, "slice": sl, "chips": chips,
                         "state_GB_per_chip": e["state_GB_per_chip"],
                         "activations_GB_per_chip": e["activations_GB_per_chip"],
                         "fits_32GB": e["fits"], "step_s": e["step_s"], "tokens_per_s": e["tokens_per_s"]})
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
