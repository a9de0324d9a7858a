"""The host schedule against its closed forms (torch bit-parity is in tests/parity)."""
from __future__ import annotations

import math

import numpy as np

from magnet_jax.decoding import GenerationConfig, stage_schedule, torch_linspace_f32
from magnet_jax.decoding.schedule import _cos_corrections, mask_rates


def _ulps(a, b):
    return np.abs(a.astype(np.float32).view(np.int32).astype(np.int64) - b.astype(np.float32).view(np.int32))


def test_linspace_and_mask_rates_within_one_ulp_of_closed_forms():
    for n in (1, 2, 3, 4, 7, 10, 20, 33, 60, 100, 256, 300):
        ts = torch_linspace_f32(n)
        exact = np.arange(n) / max(n - 1, 1)
        assert ts.dtype == np.float32 and ts[0] == 0 and (n == 1 or ts[-1] == 1)
        assert _ulps(ts, exact).max() <= 1 and (np.diff(ts) > 0).all()
        m = mask_rates(n)
        assert m[0] == 1 and (np.diff(m) <= 0).all()
        # cos of the float32 argument (torch multiplies by float32(pi)), to one ulp; near pi/2 in absolute terms
        arg = (ts * np.float32(math.pi)).astype(np.float32) * np.float32(0.5)
        assert _ulps(m, np.cos(arg.astype(np.float64))).max() <= 1
        np.testing.assert_allclose(m, np.cos(np.arange(n) / max(n - 1, 1) * math.pi / 2), atol=2e-7, rtol=0)
    # the packaged torch-cos corrections are single ulps for n <= 256
    table = _cos_corrections()
    assert max(table) <= 256 and all(d in (1, -1) for fix in table.values() for d in fix.values())


def test_stage_schedule_closed_forms():
    cfg = GenerationConfig(temp=3.0, max_cfg_coef=10.0, min_cfg_coef=1.0)
    for n in (1, 2, 10, 20, 60):
        for n_units in (1, 83, 166, 500):
            sch = stage_schedule(n, cfg, n_units)
            m = sch["mask_p"]
            np.testing.assert_array_equal(sch["num_masked"], np.maximum(np.floor(m * np.float32(n_units)), 1))
            np.testing.assert_allclose(sch["cfg_coef"], m * 10.0 + (1 - m) * 1.0, rtol=1e-6)
            np.testing.assert_allclose(sch["temperature"], np.maximum(3.0 * (n - 1 - np.arange(n)) / n, 0.01),
                                       rtol=1e-6)
            assert sch["num_masked"][0] == n_units                     # the first step masks every unit
            np.testing.assert_array_equal(sch["choice_temp"], np.zeros(n, np.float32))   # off by default
    # the float32 pitfall of REFERENCE.md: 10 steps, step 6 -> 0.49999997 * 166 -> 82 spans (not 83)
    assert stage_schedule(10, cfg, 166)["mask_p"][6] == np.float32(0.49999997)
    assert stage_schedule(10, cfg, 166)["num_masked"][6] == 82
    # the choice temperature anneals as the temperature does (and reaches 0 at the last step)
    np.testing.assert_allclose(stage_schedule(4, cfg.replace(choice_temp=2.0))["choice_temp"], [1.5, 1.0, 0.5, 0.0])
    flat = stage_schedule(5, cfg.replace(anneal_temp=False))
    np.testing.assert_array_equal(flat["temperature"], np.float32([3.0] * 5))
