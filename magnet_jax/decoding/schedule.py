"""Per-step decoding schedule (mask rate, CFG coefficient, temperature), on the host in float32 like torch.

The values are baked into the jitted program as constants, so they must equal audiocraft's
``_generate_stage`` bit for bit: a one-ulp difference in ``mask_p`` changes ``int(mask_p * n)``
(e.g. 10 steps, step 6: ``0.49999997 * 166 -> 82`` spans, not 83).
"""
from __future__ import annotations

import base64
import functools
import math
import zlib

import numpy as np

from magnet_jax.decoding._torch_cos_table import BLOB
from magnet_jax.decoding.config import GenerationConfig


def torch_linspace_f32(n: int) -> np.ndarray:
    """``torch.linspace(0, 1, n)`` (float32, CPU) bit for bit.

    ATen computes ``step = 1/(n-1)`` in float32, then ``step * i`` for the first half and
    ``1 - step * (n-1-i)`` for the second half; its compiled kernel fuses the latter into one
    multiply-add (a single rounding). Both are reproduced exactly in float64 (the products of a
    float32 by a small integer are exact there) followed by one rounding to float32. Verified against
    torch for every n < 2000 (the parity tests check n <= 256).
    """
    if n == 1:
        return np.zeros((1,), np.float32)
    step = np.float64(np.float32(1.0) / np.float32(n - 1))
    i = np.arange(n)
    lo = (step * i).astype(np.float32)
    hi = (1.0 - step * (n - 1 - i)).astype(np.float32)
    return np.where(i < n // 2, lo, hi).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _cos_corrections() -> dict[int, dict[int, int]]:
    """{n: {i: +1 / -1 ulp}} from the packaged table (3-byte entries ``(n - 1, i, '+' / '-')``)."""
    raw = zlib.decompress(base64.b64decode("".join(BLOB)))
    table: dict[int, dict[int, int]] = {}
    for j in range(0, len(raw), 3):
        table.setdefault(raw[j] + 1, {})[raw[j + 1]] = 1 if raw[j + 2:j + 3] == b"+" else -1
    return table


def mask_rates(n: int) -> np.ndarray:
    """float32 ``torch.cos(timestep * pi * 0.5)`` over ``torch.linspace(0, 1, n)``, bit for bit.

    The argument is the float32 product (torch casts ``math.pi`` to float32). torch's float32 cosine
    (SLEEF, < 1 ulp) is not correctly rounded: a generated table (``_torch_cos_table.py``, n <= 256)
    holds its one-ulp deviations from the correctly rounded value; beyond n = 256 the correctly
    rounded cosine is used (at most 1 ulp from torch).
    """
    ts = torch_linspace_f32(n)
    arg = (ts * np.float32(math.pi)).astype(np.float32) * np.float32(0.5)
    out = np.cos(arg.astype(np.float64)).astype(np.float32)
    fix = _cos_corrections().get(n)
    if fix:
        bits = out.view(np.int32).copy()
        for i, d in fix.items():
            bits[i] += d
        out = bits.view(np.float32)
    return out


def stage_schedule(n_steps: int, config: GenerationConfig, n_units: int | None = None) -> dict[str, np.ndarray]:
    """One stage's per-step schedule, exactly as ``_generate_stage``.

    Returns float32 ``mask_p`` [n], ``cfg_coef`` [n] (Python-float formula, then float32 as torch applies
    it to a float32 tensor), ``temperature`` [n] (the divisor, floored at 0.01), ``choice_temp`` [n] (the
    re-masking noise scale, beyond the reference: 0 unless ``config.choice_temp``) and, if ``n_units`` is given,
    int ``num_masked`` [n] = ``max(int(mask_p * n_units), 1)`` in float32.
    """
    mask_p = mask_rates(n_steps)
    coef, temps, choice = [], [], []
    for i in range(n_steps):
        m = float(mask_p[i])
        coef.append(m * config.max_cfg_coef + (1 - m) * config.min_cfg_coef)
        steps_left = n_steps - 1 - i
        t = config.temp * (steps_left / n_steps) if config.anneal_temp else config.temp
        temps.append(max(t, 1e-2))
        choice.append(config.choice_temp * steps_left / n_steps)
    out = {"mask_p": mask_p, "cfg_coef": np.asarray(coef, np.float32), "temperature": np.asarray(temps, np.float32),
           "choice_temp": np.asarray(choice, np.float32)}
    if n_units is not None:
        prod = (mask_p * np.float32(n_units)).astype(np.float32)
        out["num_masked"] = np.maximum(np.floor(prod).astype(np.int64), 1)
    return out
