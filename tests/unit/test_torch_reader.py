"""The torch-free checkpoint reader refuses what torch.load(weights_only=True) refuses (crafted pickles)."""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from magnet_jax.convert._common import InterpolationError, resolve_interpolations
from magnet_jax.convert._torch import TorchFileError, load_torch_file


class _Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Unknown:
    pass


def _zip_checkpoint(path, payload: bytes):
    """The torch zip layout: ``archive/data.pkl`` (+ version / byteorder records)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return path


def _legacy_checkpoint(path, payload: bytes):
    """The pre-1.6 layout: magic, protocol, sys info, then the object pickle."""
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    path.write_bytes(buf.getvalue() + payload)
    return path


@pytest.mark.parametrize("layout", [_zip_checkpoint, _legacy_checkpoint])
def test_code_execution_is_refused(tmp_path, layout):
    marker = tmp_path / "pwned"
    f = layout(tmp_path / "evil.bin", pickle.dumps({"w": _Shell(marker)}, protocol=2))
    with pytest.raises(TorchFileError, match=r"refusing to load: the pickle references (posix|os|nt)\.system"):
        load_torch_file(f)
    assert not marker.exists()


@pytest.mark.parametrize("obj, name", [
    (Unknown(), "Unknown"),
    (np.zeros(3), "_reconstruct"),                         # numpy arrays are not allowed by torch either
    (collections.defaultdict(list), "defaultdict"),
    (eval, "eval"),
])
def test_unknown_globals_are_refused(tmp_path, obj, name):
    f = _zip_checkpoint(tmp_path / "x.bin", pickle.dumps({"a": obj}, protocol=2))
    with pytest.raises(TorchFileError, match=name):
        load_torch_file(f)


def test_plain_data_is_read(tmp_path):
    """Containers and primitives (what an xp.cfg / version entry is) pass; OrderedDict keeps its type."""
    obj = collections.OrderedDict(a=1, b=[1.5, "x", None, True], c={"d": (1, 2)}, e=b"\x00\x01", f={3, 4})
    got = load_torch_file(_zip_checkpoint(tmp_path / "ok.bin", pickle.dumps(obj, protocol=2)))
    assert got == obj and type(got) is collections.OrderedDict


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint at all")
    with pytest.raises(TorchFileError, match="cannot be read as a torch checkpoint"):
        load_torch_file(tmp_path / "junk.bin")
    with pytest.raises(TorchFileError, match="no such checkpoint file"):
        load_torch_file(tmp_path / "missing.bin")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(TorchFileError, match="without data.pkl"):
        load_torch_file(tmp_path / "other.zip")
    with pytest.raises(TorchFileError, match="expected a dict"):
        load_torch_file(_zip_checkpoint(tmp_path / "list.bin", pickle.dumps([1, 2], protocol=2)))


def test_bad_persistent_id(tmp_path):
    """A persistent id whose storage type is not a torch storage class is an error, not a crash."""
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", None, "0", "cpu", 4) if obj == "STORAGE" else None
    buf = io.BytesIO()
    P(buf, protocol=2).dump({"w": "STORAGE"})
    with pytest.raises(TorchFileError, match="bad storage type"):
        load_torch_file(_zip_checkpoint(tmp_path / "s.bin", buf.getvalue()))


def test_resolve_interpolations():
    cfg = {"a": {"b": 3}, "x": "${a.b}", "y": ["${x}", "${oc.env:HOME}"], "z": "text ${a.b} inside"}
    assert resolve_interpolations(cfg, cfg) == {"a": {"b": 3}, "x": 3, "y": [3, "${oc.env:HOME}"],
                                                "z": "text ${a.b} inside"}
    with pytest.raises(InterpolationError, match="no key 'a.c'"):
        resolve_interpolations({"q": "${a.c}"}, cfg)
    with pytest.raises(InterpolationError, match="cycle"):
        loop = {"p": "${q}", "q": "${p}"}
        resolve_interpolations(loop, loop)
