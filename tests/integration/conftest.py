"""The integration layer: library tests that compile real models (LM, decoders, codecs, train steps), no torch."""
from tests.unit.conftest import _no_torch  # noqa: F401  (the same guard: importing torch here is an error)
