"""Fresh processes import the codec packages in either order (codec <-> convert re-export cycle)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stmt", ["import magnet_jax.convert.encodec",
                                  "from magnet_jax.codec import load_encodec, CodecFormatError",
                                  "import magnet_jax.convert.encodec_export"])
def test_fresh_import(stmt):
    r = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", stmt], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
