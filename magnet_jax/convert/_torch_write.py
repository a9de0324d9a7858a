"""Writing a ``torch.save`` checkpoint (zip format, pickle protocol 2) without torch.

The inverse of :func:`magnet_jax.convert._torch.load_torch_file` for what a state-dict package holds:
nested dicts / lists / strings / numbers and NumPy arrays (written as contiguous CPU tensors, each
with its own storage). ``torch.load(weights_only=True)`` reads the result.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["save_torch_file"]

_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
            np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
            np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage", np.dtype(np.int8): "CharStorage",
            np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage"}


class _Global:
    """A reference to ``module.name``, pickled as a GLOBAL without importing the module."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce requires a callable
        raise TypeError("placeholder")


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride, acc = [], 1
        for n in reversed(self.shape):
            stride.insert(0, acc)
            acc *= n
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


class _Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be extended
    dispatch = dict(pickle._Pickler.dispatch)

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", _STORAGE[obj.array.dtype]), obj.key, "cpu", int(obj.array.size))
        return None

    def save_placeholder_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = save_placeholder_global


def save_torch_file(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` for plain containers of NumPy arrays (see the module docstring)."""
    storages: list[_Storage] = []

    def convert(x):
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(convert(v) for v in x)
        if isinstance(x, np.ndarray):
            if x.dtype not in _STORAGE:
                raise TypeError(f"cannot write a {x.dtype} array to a torch file")
            st = _Storage(str(len(storages)), np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")))
            storages.append(st)
            return _Tensor(st, x.shape)
        return x

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(convert(obj))
    name = os.path.splitext(os.path.basename(os.fspath(path)))[0] or "archive"
    entries = [(f"{name}/data.pkl", buf.getvalue())]
    entries += [(f"{name}/data/{st.key}", st.array.tobytes()) for st in storages]
    entries += [(f"{name}/byteorder", b"little"), (f"{name}/version", b"3\n")]
    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for arcname, data in entries:
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            # torch aligns every record's data to 64 bytes (padding in the local header's extra field)
            offset = fh.tell() + 30 + len(arcname.encode()) + 4
            info.extra = struct.pack("<HH", 0x4246, (-offset) % 64) + b"Z" * ((-offset) % 64)
            zf.writestr(info, data)
