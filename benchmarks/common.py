"""Shared helpers for the side-by-side benchmarks (timing, thread settings, JSON output, code statistics)."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from magnet_jax.util.allocator import tcmalloc_loaded, use_tcmalloc  # noqa: E402

use_tcmalloc()    # both sides of every benchmark on tcmalloc where it is installed (XLA:CPU's page faults)


def timeit(fn, reps: int = 3, warmup: int = 1) -> float:
    """Minimum wall time of ``fn()`` over ``reps`` runs (after ``warmup`` runs), in seconds."""
    return timeit_mean(fn, reps, warmup)[1]


def timeit_mean(fn, reps: int = 8, warmup: int = 1) -> tuple[float, float]:
    """(mean, min) wall time of ``fn()`` over ``reps`` consecutive runs after ``warmup``, in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sum(times) / len(times), min(times)


def interleaved_times(fns: dict, reps: int = 8, block: int = 4) -> dict:
    """``{name: [seconds of each of ``reps`` counted runs]}`` of each ``fns[name]()``, taken in alternating blocks
    of ``block`` consecutive runs per function, so that drifts of a shared machine's speed hit all sides alike.
    The first run of every block is not counted: it pays the switch (the other side's threads still spinning,
    caches and allocator pools cold)."""
    times = {k: [] for k in fns}
    while min(len(v) for v in times.values()) < reps:
        for k, fn in fns.items():
            for i in range(block):
                t0 = time.perf_counter()
                fn()
                if i:
                    times[k].append(time.perf_counter() - t0)
    return {k: v[:reps] for k, v in times.items()}


def timeit_interleaved(fns: dict, reps: int = 8, block: int = 4) -> dict:
    """``{name: (mean, min)}`` wall times over :func:`interleaved_times`' counted runs."""
    return {k: (sum(v) / len(v), min(v)) for k, v in interleaved_times(fns, reps, block).items()}


def timed(fn) -> float:
    """Wall time of one ``fn()`` in seconds, until its (JAX) result is ready."""
    t0 = time.perf_counter()
    out = fn()
    getattr(out, "block_until_ready", lambda: None)()
    return time.perf_counter() - t0


def machine() -> dict:
    """This machine and the library versions; the torch fields only where torch is installed (the
    magnet-jax-only benchmarks run without it)."""
    import datetime

    import jax
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")\
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "jax_backend": jax.default_backend(),
            "allocator": "tcmalloc" if tcmalloc_loaded() else "system malloc"}
    try:
        import torch
    except ImportError:
        return info
    return {**info, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def write_json(name: str, payload: dict, out: str | None = None) -> Path:
    path = Path(out) if out else ROOT / "benchmarks" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


# --------------------------------------------------------------------------- LM benchmarks
def define_lm_flags(batch: int, reps: int = 3) -> None:
    """The model-shape flags shared by the LM benchmarks (lm_forward, train_step)."""
    from absl import flags
    flags.DEFINE_integer("dim", 512, "model dim")
    flags.DEFINE_integer("heads", 8, "attention heads")
    flags.DEFINE_integer("layers", 8, "transformer layers")
    flags.DEFINE_integer("frames", 500, "sequence length T (50 Hz frames)")
    flags.DEFINE_integer("batch", batch, "batch size")
    flags.DEFINE_integer("text_len", 12, "text tokens")
    flags.DEFINE_integer("reps", reps, "timed repetitions")
    flags.DEFINE_integer("threads", 0, "torch intra-op threads (0 = number of cores)")
    flags.DEFINE_string("out", None, "JSON output path")


def reference_and_ours(FLAGS):
    """audiocraft's MagnetLMModel (random weights, released layout, loaded by audiocraft's loader)
    and the same checkpoint loaded as a magnet-jax MagnetLM."""
    import tempfile

    import torch

    from magnet_jax.convert import load_audiocraft_lm
    from tests.reference import magnet_ref as R
    torch.set_num_threads(FLAGS.threads or os.cpu_count())
    xp = R.magnet_xp_cfg(dim=FLAGS.dim, num_heads=FLAGS.heads, num_layers=FLAGS.layers,
                         segment_duration=max(1, -(-FLAGS.frames // 50)))
    folder = tempfile.mkdtemp()
    R.make_checkpoint(folder, xp)
    return R.load_reference(folder), load_audiocraft_lm(folder, cache=False)


def stage1_batch(B: int, T: int, S: int, seed: int = 0) -> dict:
    """A stage-1 training batch (torch tensors): codes, T5-like hidden, text mask, ~50% span mask,
    the model input (codebook 1 masked there, codebooks > 1 masked) and CE targets (-1 = ignored)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (B, 4, T), generator=g)
    hidden = torch.randn(B, S, 768, generator=g)
    tmask = torch.ones(B, S, dtype=torch.long)
    mask = torch.rand(B, T, generator=g) < 0.5
    inp = codes.clone()
    inp[:, 1][mask] = 2048
    inp[:, 2:] = 2048
    tgt = codes[:, 1].clone()
    tgt[~mask] = -1
    return {"codes": codes, "hidden": hidden, "tmask": tmask, "mask": mask, "inputs": inp, "targets": tgt}


def reference_stage1_loss(ref, b: dict):
    """audiocraft's MAGNeT loss on a :func:`stage1_batch` (MagnetSolver._compute_cross_entropy_magnet)."""
    import torch

    from tests.reference import magnet_ref as R
    ct = R.condition_tensors(ref, b["hidden"], b["tmask"], grad=True)   # the text projection trains
    out = ref(b["inputs"], [], ct, stage=1)
    return torch.nn.functional.cross_entropy(out[:, 1].reshape(-1, 2048), b["targets"].reshape(-1), ignore_index=-1)


# --------------------------------------------------------------------------- the host's matmul peak
def host_matmul_peak(reps: int = 5) -> dict:
    """This host's fp32 GEMM throughput, FLOP/s: the best single run of each of the LM's GEMM shapes
    (``MATMUL_PEAK_SHAPES``) through XLA and through torch (MKL / oneDNN), and ``peak`` = the larger, the
    denominator of both sides' MFU."""
    import torch

    from magnet_jax.training.metrics import MATMUL_PEAK_SHAPES, measured_matmul_flops
    xla = measured_matmul_flops(reps=reps)
    best = 0.0
    with torch.no_grad():
        for m, k, n in MATMUL_PEAK_SHAPES:
            a, b = torch.ones(m, k), torch.ones(k, n)
            torch.mm(a, b)
            for _ in range(reps):
                t0 = time.perf_counter()
                torch.mm(a, b)
                best = max(best, 2 * m * k * n / (time.perf_counter() - t0))
    return {"xla": xla, "torch": best, "peak": max(xla, best), "shapes_mkn": [list(s) for s in MATMUL_PEAK_SHAPES]}


# --------------------------------------------------------------------------- peak memory
def xla_memory(compiled) -> dict:
    """Peak memory of a compiled jax program from XLA's buffer assignment: arguments + outputs + temporaries
    - donated (aliased) bytes. ``temp_size_in_bytes`` is the program's working memory (activations, grads,
    scratch) on top of its inputs."""
    try:
        ma = compiled.memory_analysis()
    except Exception as e:  # noqa: BLE001  (not every backend implements it)
        return {"error": type(e).__name__}
    if ma is None:
        return {}
    out = {n: int(getattr(ma, n, 0) or 0) for n in ("argument_size_in_bytes", "output_size_in_bytes",
                                                      "temp_size_in_bytes", "alias_size_in_bytes")}
    out["peak_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"] + out["temp_size_in_bytes"]
                         - out["alias_size_in_bytes"])
    return out


def torch_peak_extra_bytes(fn) -> int:
    """Peak of the live CPU allocations ``fn()`` makes above what is live when it starts (torch.profiler
    memory events, cumulated in time order): activations, grads and temporaries of a step."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.device_type() == torch.autograd.DeviceType.CPU and e.name() == "[memory]")
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return int(peak)


def tensor_bytes(tree) -> int:
    """Bytes of every torch tensor in a nested structure (parameters, optimizer state dicts, ...)."""
    import torch
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(tensor_bytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(tensor_bytes(v) for v in tree)
    return 0


def largest_batch(peak_at, budget_bytes: float, start: int = 1, limit: int = 1 << 14) -> int:
    """Largest batch ``b`` with ``peak_at(b) <= budget_bytes`` (doubling, then bisection); 0 if none."""
    if peak_at(start) > budget_bytes:
        return 0
    lo, hi = start, start * 2
    while hi <= limit and peak_at(hi) <= budget_bytes:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if peak_at(mid) <= budget_bytes else (lo, mid)
    return lo


def code_stats(codes: np.ndarray) -> dict:
    """codes int [B, K, T] -> the fraction of frames whose code differs from the previous one, per codebook, and
    the mean number of distinct first-codebook codes per clip."""
    return {"change_rate": [float(np.mean(codes[:, k, 1:] != codes[:, k, :-1])) for k in range(codes.shape[1])],
            "distinct_first_codebook": float(np.mean([len(set(c.tolist())) for c in codes[:, 0]]))}
