"""Benchmark: magnet_jax.decoding.musicgen vs audiocraft's LMModel.generate (MusicGen, CPU, same process).

Both run the same random-weight MusicGen checkpoint (audiocraft's own builder + loader; the loader entry for
magnet-jax), audiocraft's MusicGen defaults (top-k 250, temperature 1, CFG 3 as one 2B batch), the same text
condition and thread count. magnet-jax: compile time (ahead of time, timed alone) and one steady call;
audiocraft: one call after a short warm-up. Prints the ratio and writes JSON.

    python -m benchmarks.musicgen_generate [--dim 256 --layers 4 --heads 4 --seconds 2 --batch 1 4 --threads 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchmarks.common import ROOT, machine, write_json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--text-len", type=int, default=12)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--scan-layers", choices=["true", "false"], default=None,
                    help="ours: scan the layers or loop over them (model config scan_layers; default: the config's)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "musicgen_generate.json"))
    a = ap.parse_args()

    import jax
    import numpy as np
    import torch
    from flax import nnx

    from magnet_jax.convert import load_audiocraft_checkpoint
    from magnet_jax.decoding.config import MusicGenGenerationConfig
    from magnet_jax.decoding.musicgen import _generate, generate
    from tests.reference import musicgen_ref as R

    torch.set_num_threads(a.threads)
    over = {} if a.scan_layers is None else {"scan_layers": a.scan_layers == "true"}
    folder = tempfile.mkdtemp(prefix="musicgen_bench_")
    xp = R.musicgen_xp_cfg(dim=a.dim, num_heads=a.heads, num_layers=a.layers, segment_duration=a.seconds)
    R.make_checkpoint(folder, xp, seed=0)
    ref = R.load_reference(folder)
    lm = load_audiocraft_checkpoint(folder, cache=False, **over).lm
    T = int(round(50 * a.seconds))
    cfg = MusicGenGenerationConfig()
    results = {"config": {"model": {"dim": a.dim, "heads": a.heads, "layers": a.layers, "card": 2048, "n_q": 4,
                                    "frames": T, "text_len": a.text_len, "scan_layers": lm.config.scan_layers},
                          "generation": cfg.to_dict(), "threads": a.threads, **machine()}, "runs": []}
    rs = np.random.RandomState(0)
    for B in a.batch:
        hidden = rs.randn(B, a.text_len, lm.config.text_dim).astype(np.float32)
        mask = np.ones((B, a.text_len), np.int32)
        graphdef, state = nnx.split(lm)
        t0 = time.perf_counter()
        _generate.lower(graphdef, state, hidden, mask, np.zeros((B, 4, 0), np.int32), jax.random.key(0), None,
                        config=cfg, frames=T).compile()
        compile_s = time.perf_counter() - t0
        generate(lm, hidden, mask, config=cfg, rng=jax.random.key(0), num_frames=T).block_until_ready()
        t0 = time.perf_counter()
        out = generate(lm, hidden + 0.1, mask, config=cfg, rng=jax.random.key(1), num_frames=T)
        out.block_until_ready()
        jax_s = time.perf_counter() - t0
        R.reference_generate(ref, hidden, mask, num_frames=4, use_sampling=True)       # warm-up
        t0 = time.perf_counter()
        ref_out = R.reference_generate(ref, hidden, mask, num_frames=T, use_sampling=True, top_k=cfg.top_k,
                                       temp=cfg.temp, cfg_coef=cfg.cfg_coef)
        ref_s = time.perf_counter() - t0
        assert ref_out.shape == tuple(out.shape), (ref_out.shape, out.shape)
        run = {"batch": B, "jax_steady_s": round(jax_s, 4), "jax_compile_s": round(compile_s, 3),
               "audiocraft_s": round(ref_s, 4), "speedup": round(ref_s / jax_s, 2), "steps": T + 3}
        results["runs"].append(run)
        print(f"batch {B}: magnet-jax {jax_s:.3f} s (compile {compile_s:.2f} s) | audiocraft {ref_s:.3f} s | "
              f"speedup x{ref_s / jax_s:.2f}", flush=True)
    write_json("musicgen_generate", results, a.out)


if __name__ == "__main__":
    main()
