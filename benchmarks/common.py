"""Shared helpers for the side-by-side benchmarks (timing, thread settings, JSON output)."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def timeit(fn, reps: int = 3, warmup: int = 1) -> float:
    """Minimum wall time of ``fn()`` over ``reps`` runs (after ``warmup`` runs), in seconds."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> dict:
    import jax
    import torch
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "jax_backend": jax.default_backend()}


def write_json(name: str, payload: dict, out: str | None = None) -> Path:
    path = Path(out) if out else ROOT / "benchmarks" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
