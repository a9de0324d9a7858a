"""Benchmark: magnet_jax.decoding.magnet vs audiocraft's MagnetLMModel.generate (CPU, same process).

Both run the same random-weight checkpoint (audiocraft's own builder + loader; ``load_audiocraft_lm``
for magnet-jax), the same decoding config (defaults: music 10 s, top-p 0.9, temp 3.0, CFG 10 -> 1,
steps [20, 10, 10, 10], nonoverlap) and the same text condition, with the same thread count.
For magnet-jax: compile time (ahead-of-time ``lower().compile()``, timed alone) and one steady-state call; for
audiocraft: one call after a short warm-up. Prints the ratio and writes JSON. Peak memory per batch: ours from
XLA's buffer assignment of the compiled program (``peak_bytes``: weights + inputs + temporaries), audiocraft's
its weights plus the peak of torch.profiler's allocation events during one generate (``--memory=false`` skips it).

    python benchmarks/generate.py [--dim 256 --layers 4 --heads 4 --seconds 10 --batch 1 8 --threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--text-len", type=int, default=12)
    ap.add_argument("--arrangement", default="nonoverlap", choices=["nonoverlap", "stride1"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--scan-layers", choices=["true", "false"], default=None,
                    help="ours: scan the layers or loop over them (model config scan_layers; default: the config's)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "generate.json"))
    ap.add_argument("--memory", default="true", choices=["true", "false"], help="measure peak memory too")
    a = ap.parse_args()

    os.environ.setdefault("XLA_FLAGS", "")
    import jax
    import numpy as np
    import torch

    from benchmarks.common import tensor_bytes, torch_peak_extra_bytes, xla_memory
    from magnet_jax import decoding as D
    from magnet_jax.convert import load_audiocraft_lm
    from magnet_jax.decoding.inputs import prepare_inputs
    from magnet_jax.decoding.magnet import _decode
    from tests.reference import magnet_ref as R
    from tests.reference.magnet_generate_ref import reference_generate

    torch.set_num_threads(a.threads)
    over = {} if a.scan_layers is None else {"scan_layers": a.scan_layers == "true"}
    folder = tempfile.mkdtemp(prefix="magnet_bench_")
    seconds = int(a.seconds) if float(a.seconds).is_integer() else a.seconds
    xp = R.magnet_xp_cfg(dim=a.dim, num_heads=a.heads, num_layers=a.layers, segment_duration=seconds)
    R.make_checkpoint(folder, xp, seed=0)
    ref = R.load_reference(folder)
    lm = load_audiocraft_lm(folder, cache=False, **over)
    T = lm.config.segment_frames
    cfg = D.GenerationConfig.music(a.seconds, span_arrangement=a.arrangement)
    ref_kw = dict(use_sampling=cfg.use_sampling, temp=cfg.temp, top_k=cfg.top_k, top_p=cfg.top_p,
                  max_cfg_coef=cfg.max_cfg_coef, min_cfg_coef=cfg.min_cfg_coef,
                  decoding_steps=cfg.decoding_steps, span_arrangement=cfg.span_arrangement,
                  span_scoring=cfg.span_scoring, anneal_temp=cfg.anneal_temp)
    results = {"config": {"model": {"dim": a.dim, "heads": a.heads, "layers": a.layers, "card": 2048, "n_q": 4,
                                    "frames": T, "text_len": a.text_len, "scan_layers": lm.config.scan_layers},
                          "generation": cfg.to_dict(), "threads": a.threads, "torch_threads": torch.get_num_threads(),
                          "jax": jax.__version__, "torch": torch.__version__, "machine": platform.processor() or
                          platform.machine(), "cpu_count": os.cpu_count()},
               "runs": []}
    rs = np.random.RandomState(0)
    for B in a.batch:
        hidden = rs.randn(B, a.text_len, lm.config.text_dim).astype(np.float32)
        mask = np.ones((B, a.text_len), np.int32)
        # magnet-jax: ahead-of-time compile (timed alone), a first call, then one steady call with new inputs
        from flax import nnx
        th, tm, known, keep = prepare_inputs(lm.config, hidden, mask, None, None, None, None, T, None, cfg)
        graphdef, state = nnx.split(lm)
        t0 = time.perf_counter()
        compiled = _decode.lower(graphdef, cfg, state, th, tm, known, keep, jax.random.key(0)).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        D.generate(lm, hidden, mask, config=cfg, rng=jax.random.key(0), num_frames=T).block_until_ready()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = D.generate(lm, hidden + 0.1, mask, config=cfg, rng=jax.random.key(1), num_frames=T)
        out.block_until_ready()
        jax_s = time.perf_counter() - t0
        # audiocraft: warm-up with 1 step per stage, then one full run
        torch.manual_seed(0)
        reference_generate(ref, hidden, mask, num_frames=T, **{**ref_kw, "decoding_steps": (1, 1, 1, 1)})
        t0 = time.perf_counter()
        ref_out = reference_generate(ref, hidden, mask, num_frames=T, **ref_kw)
        ref_s = time.perf_counter() - t0
        assert ref_out.shape == tuple(out.shape), (ref_out.shape, out.shape)
        run = {"batch": B, "jax_steady_s": round(jax_s, 4), "jax_compile_s": round(compile_s, 3),
               "jax_first_call_s": round(first, 3), "audiocraft_s": round(ref_s, 4),
               "speedup": round(ref_s / jax_s, 2), "output_shape": list(out.shape)}
        if a.memory == "true":
            weights = tensor_bytes(list(ref.parameters()))
            extra = torch_peak_extra_bytes(lambda: reference_generate(ref, hidden, mask, num_frames=T, **ref_kw))
            run["memory"] = {"magnet_jax": xla_memory(compiled),
                             "audiocraft": {"weights_bytes": weights, "generate_extra_bytes": extra,
                                            "peak_bytes": weights + extra}}
            print(f"batch {B}: peak memory magnet-jax {run['memory']['magnet_jax'].get('peak_bytes', 0) / 2**20:.0f}"
                  f" MiB | audiocraft {(weights + extra) / 2**20:.0f} MiB", flush=True)
        results["runs"].append(run)
        print(f"batch {B}: magnet-jax {jax_s:.3f} s (compile {compile_s:.2f} s) | audiocraft {ref_s:.3f} s | "
              f"speedup x{ref_s / jax_s:.2f}", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
