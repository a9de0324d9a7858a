"""The span-length LUT of the masking objective vs audiocraft's MagnetSolver."""
import types

from magnet_jax.objectives import magnet as masking


def test_lut_equals_reference_solver():
    from tests.reference import shim  # noqa: F401, I001  (patches audiocraft's imports: must come first)
    from audiocraft.solvers.magnet import MagnetSolver
    fake = types.SimpleNamespace(cfg=types.SimpleNamespace(masking=types.SimpleNamespace(span_len=3)))
    for T in (500, 1500):
        assert masking.span_lut(T, 3).tolist() == MagnetSolver._calc_mean_maskrate_to_u_LUT(fake, T)
