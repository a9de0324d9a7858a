"""Benchmark: latency at batch 1 of MAGNeT, MAGNeT + rescoring, hybrid from two models (MusicGen prefix of P s +
MAGNeT), Hybrid-MAGNeT as one model (its own AR prefix of P s, then MAGNeT decoding) and MusicGen, all of the
same size, in magnet-jax (the paper's rescoring / Hybrid-MAGNeT latency rows).

Same transformer for both LMs (dim / heads / layers, 4 x 2048 codes, T5-base width), random weights,
``--seconds`` of audio. MAGNeT: music defaults for that window (``GenerationConfig.music``: steps
``[first_stage_steps, 10, 10, 10]``, nonoverlap, top-p 0.9, CFG 10 -> 1); rescoring adds one teacher-forced CFG
forward of the MusicGen per decoding step (``--rescorer-weight``, Eq. 5); hybrid: MusicGen generates the first
``P`` seconds (KV cache, audiocraft defaults), MAGNeT continues from them (the same program as
``pipe.generate(..., hybrid_prefix_seconds=P)`` without T5 and the codec); Hybrid-MAGNeT: one ``HybridMagnetLM``
(``decoding.hybrid``: KV-cached AR prefix, then the rest as MAGNeT); MusicGen: the whole clip. Each is
jitted once (the first call, compile included, is reported apart); the latency is the minimum of ``--reps``
calls. No reference exists to run side by side: neither method was released by audiocraft.

    python -m benchmarks.hybrid_latency [--dim 128 --layers 2 --heads 4 --seconds 5 --prefix 1 3 --reps 2]
    python -m benchmarks.hybrid_latency --dim 1024 --heads 16 --layers 24 --seconds 10     # magnet-small size
"""
from __future__ import annotations

import argparse

from benchmarks.common import ROOT, timed, write_json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--prefix", type=float, nargs="+", default=[1.0, 3.0], help="hybrid prefix seconds")
    ap.add_argument("--rescorer-weight", type=float, default=0.8)
    ap.add_argument("--steps", type=int, nargs="+", default=None, help="MAGNeT decoding steps (default: music)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--text-len", type=int, default=12)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hybrid_latency.json"))
    a = ap.parse_args()

    import jax
    import numpy as np
    from flax import nnx

    from magnet_jax import decoding
    from magnet_jax.decoding.config import MusicGenGenerationConfig
    from magnet_jax.decoding.hybrid import generate as hybrid_magnet_generate
    from magnet_jax.decoding.musicgen import generate as musicgen_generate
    from magnet_jax.model import MagnetConfig, MagnetLM, MusicGenConfig, MusicGenLM, num_params
    from magnet_jax.model.hybrid import HybridMagnetConfig, HybridMagnetLM

    arch = dict(dim=a.dim, num_heads=a.heads, num_layers=a.layers, segment_duration=a.seconds)
    magnet = MagnetLM(MagnetConfig(**arch), rngs=nnx.Rngs(0))
    musicgen = MusicGenLM(MusicGenConfig(**arch), rngs=nnx.Rngs(1))
    hybrid = HybridMagnetLM(HybridMagnetConfig(**arch), rngs=nnx.Rngs(2))
    T = magnet.config.segment_frames
    mcfg = decoding.GenerationConfig.music(a.seconds, **({"decoding_steps": tuple(a.steps)} if a.steps else {}))
    rcfg = mcfg.replace(rescorer_weight=a.rescorer_weight)
    gcfg = MusicGenGenerationConfig()
    rs = np.random.RandomState(0)
    h = rs.randn(1, a.text_len, 768).astype(np.float32)
    m = np.ones((1, a.text_len), np.int32)

    def magnet_fn(k, config=mcfg, prompt=None):
        return decoding.generate(magnet, h, m, config=config, rng=k, num_frames=T, prompt=prompt, rescorer=musicgen)

    def hybrid_fn(n):
        def run(k):
            prefix = musicgen_generate(musicgen, h, m, config=gcfg, rng=jax.random.fold_in(k, 1), num_frames=n)
            return magnet_fn(k, prompt=prefix)
        return run

    def hybrid_magnet_fn(n):
        return lambda k: hybrid_magnet_generate(hybrid, h, m, config=mcfg, ar_config=gcfg, prefix_frames=n, rng=k,
                                                num_frames=T)

    variants = {"magnet": magnet_fn, "magnet_rescoring": lambda k: magnet_fn(k, rcfg)}
    for p in a.prefix:
        n = int(round(p * magnet.config.frame_rate))
        if not 0 < n < T:
            ap.error(f"--prefix {p} s must be inside the {a.seconds:g} s clip")
        variants[f"hybrid_{p:g}s"] = hybrid_fn(n)
        variants[f"hybrid_magnet_{p:g}s"] = hybrid_magnet_fn(n)
    variants["musicgen"] = lambda k: musicgen_generate(musicgen, h, m, config=gcfg, rng=k, num_frames=T)

    results = {"config": {"arch": arch, "frames": T, "params_each": num_params(magnet), "batch": 1,
                          "magnet": mcfg.to_dict(), "rescorer_weight": a.rescorer_weight, "musicgen": gcfg.to_dict(),
                          "prefix_seconds": a.prefix, "reps": a.reps, "backend": jax.default_backend(),
                          "device": str(jax.devices()[0])}, "runs": {}}
    for name, fn in variants.items():
        first = timed(lambda: fn(jax.random.key(0)))                           # compile + one run
        steady = min(timed(lambda: fn(jax.random.key(1 + r))) for r in range(a.reps))
        results["runs"][name] = {"latency_s": round(steady, 4), "first_call_s": round(first, 3)}
        print(f"{name:>18}: {steady:.3f} s  (first call {first:.1f} s)", flush=True)
        write_json("hybrid_latency", results, a.out)                  # after every variant: partial runs count
    base = results["runs"]["magnet"]["latency_s"]
    results["relative_to_magnet"] = {k: round(v["latency_s"] / base, 2) for k, v in results["runs"].items()}
    write_json("hybrid_latency", results, a.out)


if __name__ == "__main__":
    main()
