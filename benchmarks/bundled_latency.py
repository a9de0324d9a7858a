"""The main job's latency on this machine: one clip at batch 1 from a model, after compilation.

  python -m benchmarks.bundled_latency [--model=bundled] [--seconds=10] [--reps=3]

``MagnetPipeline.from_pretrained(--model)`` (the offline model by default, what ``bash tools/run.sh`` falls back
to), its example description. The first call (compilation included) is reported apart; then ``--reps`` calls,
each split into the LM's decoding (``generate_codes``: T5, the decoding program; blocked until ready) and the
codec's decode to audio (``decode_codes``). Reports the minimum and the mean of the total, and the machine's load
average (other processes on a shared host inflate the times). Writes ``benchmarks/results/bundled_latency.json``.
"""
from __future__ import annotations

import os
import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("model", "bundled", "model (MagnetPipeline.from_pretrained name or folder)")
flags.DEFINE_float("seconds", 10.0, "clip length")
flags.DEFINE_integer("reps", 3, "timed calls after the first")
flags.DEFINE_string("text", None, "description (default: the model's example description)")
flags.DEFINE_string("out", None, "JSON output (default benchmarks/results/bundled_latency.json)")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from benchmarks.common import machine, write_json
    from magnet_jax.pipelines.magnet import MagnetPipeline

    t0 = time.perf_counter()
    pipe = MagnetPipeline.from_pretrained(FLAGS.model)
    load_s = time.perf_counter() - t0
    text = FLAGS.text or pipe.example_description

    def once(seed):
        t = time.perf_counter()
        codes = pipe.generate_codes([text], duration=FLAGS.seconds, seed=seed)
        codes.block_until_ready()
        lm = time.perf_counter() - t
        wav = pipe.decode_codes(codes)
        total = time.perf_counter() - t
        assert np.isfinite(wav).all()
        return dict(lm_s=lm, codec_s=total - lm, total_s=total)

    first = once(0)
    runs = [once(i + 1) for i in range(FLAGS.reps)]
    totals = [r["total_s"] for r in runs]
    out = {"benchmark": "bundled_latency", "machine": machine(), "loadavg": list(os.getloadavg()),
           "model": FLAGS.model, "text": text, "seconds": FLAGS.seconds, "batch": 1, "load_s": load_s,
           "first_call": first, "runs": runs, "min_total_s": min(totals), "mean_total_s": float(np.mean(totals)),
           "lm_config": {k: getattr(pipe.lm.config, k) for k in ("dim", "num_layers", "num_heads", "n_q", "card")},
           "decoding_steps": list(pipe.generation.decoding_steps)}
    write_json("bundled_latency", out, FLAGS.out)
    print(f"{FLAGS.model}, {FLAGS.seconds:g} s at batch 1: first call {first['total_s']:.1f} s (compile), then "
          f"{min(totals):.2f} s min / {np.mean(totals):.2f} s mean (LM {min(r['lm_s'] for r in runs):.2f} s, codec "
          f"{min(r['codec_s'] for r in runs):.2f} s); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    app.run(main)
