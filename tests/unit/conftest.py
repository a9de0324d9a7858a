"""The unit layer runs without the reference stack: importing torch from a unit test is an error."""
import sys

import pytest


@pytest.fixture(autouse=True)
def _no_torch(request):
    before = "torch" in sys.modules
    yield
    if not before and "torch" in sys.modules:
        pytest.fail(f"{request.node.nodeid} imported torch: unit tests must not need the reference stack "
                    "(move it to tests/parity/)")
