"""Benchmark: the trained bundled MAGNeT against a Hybrid-MAGNeT trained on the same tokens (same size, codec and
text encoder), batch 1, one description, the whole window: latency of ``pipe.generate_codes`` (T5 + the LM's
decoding, no codec) and of ``pipe.generate`` (+ the codec's decoder), in one run, JSON.

The hybrid model is a folder laid out as the bundled one (``magnet_jax.bundled.build.assemble`` of its
``tools/train.py --config=configs/magnet.py:hybrid_bundled`` workdir); its AR prefix is ``--prefix`` seconds.
Each pipeline is called once first (compile included, reported apart); the latency is the minimum of ``--reps``.

    python -m benchmarks.bundled_hybrid --hybrid=/work/runs/hybrid_bundled/bundled [--prefix 1 3 --reps 2]
"""
from __future__ import annotations

import argparse

from benchmarks.common import ROOT, machine, timed, write_json

TEXT = "a calm piano piece in C major, 80 bpm"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--magnet", default="bundled", help="MAGNeT pipeline (from_pretrained name or folder)")
    ap.add_argument("--hybrid", required=True, help="Hybrid-MAGNeT folder in the bundled layout")
    ap.add_argument("--prefix", type=float, nargs="+", default=[1.0, 3.0], help="hybrid AR prefix seconds")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bundled_hybrid.json"))
    a = ap.parse_args()

    from magnet_jax.pipelines.magnet import MagnetPipeline

    magnet = MagnetPipeline.from_pretrained(a.magnet)
    hybrid = MagnetPipeline.from_pretrained(a.hybrid)
    seconds = min(magnet.lm_frames(), hybrid.lm_frames()) / magnet.frame_rate    # both windows: 498 frames
    variants = {"magnet": (magnet, {})}
    for p in a.prefix:
        variants[f"hybrid_magnet_{p:g}s"] = (hybrid, {"prefix_seconds": p})
    results = {"config": {"magnet": a.magnet, "hybrid": a.hybrid, "seconds": seconds, "batch": 1, "text": TEXT,
                          "magnet_generation": magnet.generation.to_dict(), "reps": a.reps,
                          "machine": machine()}, "runs": {}}
    for name, (pipe, kw) in variants.items():
        row = {}
        for what, call in (("codes", pipe.generate_codes), ("audio", pipe.generate)):
            first = timed(lambda: call([TEXT], duration=seconds, seed=0, **kw))
            steady = min(timed(lambda: call([TEXT], duration=seconds, seed=1 + r, **kw)) for r in range(a.reps))
            row[f"{what}_latency_s"], row[f"{what}_first_call_s"] = round(steady, 3), round(first, 2)
        results["runs"][name] = row
        print(f"{name:>20}: codes {row['codes_latency_s']:.2f} s, audio {row['audio_latency_s']:.2f} s "
              f"(first calls {row['codes_first_call_s']:.1f} / {row['audio_first_call_s']:.1f} s)", flush=True)
        write_json("bundled_hybrid", results, a.out)
    base = results["runs"]["magnet"]["codes_latency_s"]
    results["codes_relative_to_magnet"] = {k: round(v["codes_latency_s"] / base, 2) for k, v in results["runs"].items()}
    write_json("bundled_hybrid", results, a.out)


if __name__ == "__main__":
    main()
