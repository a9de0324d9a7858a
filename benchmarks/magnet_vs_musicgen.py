"""Benchmark: MAGNeT vs MusicGen of the same size, both in magnet-jax (the paper's latency / throughput figure).

Same transformer (dim / heads / layers, 4 x 2048 codes, T5-base width), random weights, ``--seconds`` of
audio (default 10 s = 500 frames) per sample. MAGNeT: the released decoding (music defaults, steps
[20, 10, 10, 10], nonoverlap, top-p 0.9); MusicGen: audiocraft defaults (top-k 250, CFG 3), 503 steps
over a KV cache. Both jitted once per batch size (compile time reported apart). Per batch: latency (s per
call) and throughput (samples / s). Writes JSON and a two-panel plot; runs as-is on an accelerator.

Reading it: MAGNeT does ``sum(decoding_steps)`` full-length forwards (50 x 500 frames), MusicGen ~503
one-frame forwards, i.e. ~50x fewer token-forwards. On a compute-bound CPU with a small model MusicGen
is therefore faster; the paper's MAGNeT advantage (x7 at batch 1) is on accelerators, where a one-frame step
is bound by latency / weight reads and a 500-frame forward costs about as much as a one-frame one.

    python -m benchmarks.magnet_vs_musicgen [--dim 256 --layers 4 --heads 4 --seconds 10 --batch 1 2 4]
"""
from __future__ import annotations

import argparse
import time

from benchmarks.common import ROOT, write_json


def _time(fn):
    t0 = time.perf_counter()
    fn().block_until_ready()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--text-len", type=int, default=12)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "magnet_vs_musicgen.json"))
    a = ap.parse_args()

    import jax
    import numpy as np
    from flax import nnx

    from magnet_jax import decoding
    from magnet_jax.decoding.config import MusicGenGenerationConfig
    from magnet_jax.decoding.musicgen import generate as musicgen_generate
    from magnet_jax.model import MagnetConfig, MagnetLM, MusicGenConfig, MusicGenLM, num_params

    arch = dict(dim=a.dim, num_heads=a.heads, num_layers=a.layers, segment_duration=a.seconds)
    magnet = MagnetLM(MagnetConfig(**arch), rngs=nnx.Rngs(0))
    musicgen = MusicGenLM(MusicGenConfig(**arch), rngs=nnx.Rngs(0))
    T = magnet.config.segment_frames
    mcfg = decoding.GenerationConfig.music(a.seconds)
    gcfg = MusicGenGenerationConfig()
    models = {
        "magnet": lambda h, m, k: decoding.generate(magnet, h, m, config=mcfg, rng=k, num_frames=T),
        "musicgen": lambda h, m, k: musicgen_generate(musicgen, h, m, config=gcfg, rng=k, num_frames=T),
    }
    results = {"config": {"arch": arch, "frames": T, "params": num_params(magnet), "magnet": mcfg.to_dict(),
                          "musicgen": gcfg.to_dict(), "backend": jax.default_backend(),
                          "device": str(jax.devices()[0])}, "runs": []}
    rs = np.random.RandomState(0)
    for B in a.batch:
        h = rs.randn(B, a.text_len, 768).astype(np.float32)
        m = np.ones((B, a.text_len), np.int32)
        row = {"batch": B}
        for name, fn in models.items():
            first = _time(lambda: fn(h, m, jax.random.key(0)))                 # compile + one run
            steady = _time(lambda: fn(h + 0.1, m, jax.random.key(1)))
            row[name] = {"latency_s": round(steady, 4), "throughput_samples_s": round(B / steady, 4),
                         "first_call_s": round(first, 3)}
        row["magnet_speedup"] = round(row["musicgen"]["latency_s"] / row["magnet"]["latency_s"], 2)
        results["runs"].append(row)
        print(f"batch {B}: MAGNeT {row['magnet']['latency_s']:.3f} s | MusicGen {row['musicgen']['latency_s']:.3f} s"
              f" | MAGNeT x{row['magnet_speedup']} faster", flush=True)
        path = write_json("magnet_vs_musicgen", results, a.out)      # after every batch size: partial runs count
        _plot(results, path.with_suffix(".png"))


def _plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bs = [r["batch"] for r in results["runs"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in ("magnet", "musicgen"):
        ax1.plot(bs, [r[name]["latency_s"] for r in results["runs"]], "o-", label=name)
        ax2.plot(bs, [r[name]["throughput_samples_s"] for r in results["runs"]], "o-", label=name)
    for ax, lab in ((ax1, "latency (s / call)"), (ax2, "throughput (samples / s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(lab)
        ax.legend()
    fig.suptitle(f"{results['config']['frames']} frames, {results['config']['backend']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
