"""Reading PyTorch checkpoint files (``.bin`` / ``.pt`` / ``.th``) without torch.

:func:`load_torch_file` accepts what ``torch.load(weights_only=True)`` accepts for a state dict:
tensors (rebuilt as NumPy arrays in their stored dtype: float16 stays ``np.float16``, bfloat16 is
``ml_dtypes.bfloat16``), ``OrderedDict`` / ``Counter``, and primitive values and containers. Every
other global a pickle names (``os.system``, arbitrary classes, numpy reconstructors, ...) is refused
with :class:`TorchFileError`, as are the exotic tensor kinds (quantized, sparse, nested, meta).
Both the zip format (torch >= 1.6) and the legacy single-pickle format are read.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["TorchFileError", "load_torch_file"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class TorchFileError(ValueError):
    """The file is not a readable torch checkpoint, or it holds something other than plain data."""


# torch dtype names -> NumPy dtypes (the storage classes' dtypes and the torch.<dtype> globals)
_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
    "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64, "bool": np.bool_,
    "complex64": np.complex64, "complex128": np.complex128,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2,
}
_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
_ALIASES = {"double": "float64", "float": "float32", "half": "float16", "long": "int64", "int": "int32",
            "short": "int16", "cfloat": "complex64", "cdouble": "complex128"}


class _DType:
    def __init__(self, name: str):
        self.np = np.dtype(_DTYPES[name])


class _StorageType(_DType):
    pass


class _Marker:
    """A class global torch allows but that only matters as an argument (torch.Tensor, Parameter)."""

    def __init__(self, name: str):
        self.name = name


class _Storage:
    """A flat buffer of ``numel`` elements; ``data`` is filled at once (zip) or later (legacy)."""

    def __init__(self, dtype: np.dtype, numel: int, data: np.ndarray | None = None, base=None, offset: int = 0):
        self.dtype, self.numel, self._data, self.base, self.offset = dtype, int(numel), data, base, int(offset)

    @property
    def data(self) -> np.ndarray:
        if self.base is not None:
            return self.base.data[self.offset:self.offset + self.numel]
        if self._data is None:
            raise TorchFileError("tensor storage referenced before its data was read")
        return self._data


class _LazyTensor:
    def __init__(self, storage: _Storage, offset, size, stride, dtype=None):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)
        self.dtype = dtype

    def materialize(self) -> np.ndarray:
        st = self.storage
        flat = st.data
        if self.dtype is not None and self.dtype != st.dtype:  # _rebuild_tensor_v3 over untyped bytes
            flat = flat.view(np.uint8).view(self.dtype)
        if len(self.size) != len(self.stride) or any(s < 0 for s in self.size + self.stride):
            raise TorchFileError(f"bad tensor geometry size={self.size} stride={self.stride}")
        if 0 in self.size:
            return np.zeros(self.size, flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= flat.size:
            raise TorchFileError(f"tensor of size {self.size} reads past the end of its storage ({flat.size})")
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.size, [s * item for s in self.stride],
                                               writeable=False)
        out = np.array(view, copy=True, order="C")
        return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))


def _check_metadata(metadata):
    if metadata and any(bool(v) for v in dict(metadata).values()):
        raise TorchFileError(f"tensors with conj / neg bits are not supported ({metadata})")


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    _check_metadata(metadata)
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    _check_metadata(metadata)
    return _LazyTensor(storage, storage_offset, size, stride, dtype=dtype.np)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if not callable(func) or not isinstance(new_type, _Marker):
        raise TorchFileError("unsupported tensor subclass in the pickle")
    return func(*args)


def _rebuild_device_tensor_from_cpu_tensor(data, dtype, device, requires_grad):
    return _Cast(data, dtype.np)


class _Cast:
    def __init__(self, data, dtype):
        self.data, self.dtype = data, dtype

    def materialize(self):
        return _materialize(self.data).astype(self.dtype)


def _encode(obj, encoding="utf-8"):
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise TorchFileError("refusing _codecs.encode with non-text arguments")
    return obj.encode(encoding)


def _unsupported(kind):
    def f(*_a, **_k):
        raise TorchFileError(f"{kind} tensors are not supported by magnet-jax's checkpoint reader")
    return f


_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("builtins", "set"): set,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _encode,
    ("torch", "Size"): tuple,
    ("torch", "device"): str,
    ("torch.serialization", "_get_layout"): str,
    ("torch", "Tensor"): _Marker("Tensor"),
    ("torch._tensor", "Tensor"): _Marker("Tensor"),
    ("torch.nn.parameter", "Parameter"): _Marker("Parameter"),
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"): _rebuild_device_tensor_from_cpu_tensor,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
}
for _kind in ("qtensor", "sparse_tensor", "meta_tensor_no_storage", "nested_tensor", "wrapper_subclass"):
    _GLOBALS[("torch._utils", f"_rebuild_{_kind}")] = _unsupported(_kind.split("_")[0])
_GLOBALS.update({("torch", n): _DType(n) for n in _DTYPES})
_GLOBALS.update({("torch", a): _DType(n) for a, n in _ALIASES.items()})
_GLOBALS.update({("torch", s): _StorageType(n) for s, n in _STORAGES.items()})
_GLOBALS.update({("torch.storage", "UntypedStorage"): _StorageType("uint8")})
_PY2 = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path, persistent_load):
        super().__init__(file, encoding="utf-8")
        self._path, self._persistent = path, persistent_load

    def find_class(self, module, name):
        module = _PY2.get(module, module)
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise TorchFileError(
                f"{self._path}: refusing to load: the pickle references {module}.{name}, which "
                f"torch.load(weights_only=True) refuses too (only tensors, containers and plain values are "
                f"read; never load an untrusted checkpoint with pickle)") from None

    def persistent_load(self, pid):
        return self._persistent(pid)


def _storage_dtype(storage_type) -> np.dtype:
    if not isinstance(storage_type, _StorageType):
        raise TorchFileError(f"bad storage type {storage_type!r} in the pickle")
    return storage_type.np


def _materialize(obj):
    if isinstance(obj, (_LazyTensor, _Cast)):
        return obj.materialize()
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict, collections.OrderedDict, collections.Counter) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    if isinstance(obj, _Storage):
        raise TorchFileError("bare storages (not wrapped in a tensor) are not supported")
    return obj


# --------------------------------------------------------------------------------------- zip format
def _zip_entry(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype, numel: int) -> np.ndarray:
    nbytes = numel * dtype.itemsize
    if info.file_size < nbytes:
        raise TorchFileError(f"{path}: storage {info.filename} has {info.file_size} bytes, expected {nbytes}")
    if nbytes == 0:
        return np.zeros((0,), dtype)
    if info.compress_type == zipfile.ZIP_STORED:  # torch writes uncompressed records: map them, don't copy
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            head = fh.read(30)
            if head[:4] != b"PK\x03\x04":
                raise TorchFileError(f"{path}: corrupt zip local header for {info.filename}")
            name_len, extra_len = struct.unpack("<HH", head[26:30])
        offset = info.header_offset + 30 + name_len + extra_len
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(numel,))
    return np.frombuffer(zf.read(info)[:nbytes], dtype=dtype)


def _load_zip(path: str):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            kind = " (a TorchScript archive)" if any(n.endswith("constants.pkl") for n in names) else ""
            raise TorchFileError(f"{path}: zip file without data.pkl{kind}: not a torch.save checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        big = (prefix + "byteorder") in names and zf.read(prefix + "byteorder") == b"big"
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
                raise TorchFileError(f"{path}: unknown persistent id {str(pid)[:60]!r}")
            _, storage_type, key, _location, numel = pid
            dtype = _storage_dtype(storage_type)
            if key not in storages:
                try:
                    info = zf.getinfo(f"{prefix}data/{key}")
                except KeyError:
                    raise TorchFileError(f"{path}: storage record data/{key} is missing") from None
                data = _zip_entry(path, zf, info, dtype.newbyteorder(">") if big else dtype, int(numel))
                storages[key] = _Storage(dtype, numel, data)
            return storages[key]

        with zf.open(pkl[0]) as fh:
            obj = _Unpickler(io.BytesIO(fh.read()), path, persistent_load).load()
        return _materialize(obj)


# --------------------------------------------------------------------------------------- legacy format
def _load_legacy(path: str):
    with open(path, "rb") as fh:
        def load_header():
            return _Unpickler(fh, path, _no_persistent(path)).load()
        try:
            magic = load_header()
        except TorchFileError:
            raise
        except Exception as e:
            raise TorchFileError(f"{path}: cannot be read as a torch checkpoint ({type(e).__name__}: {e})") from None
        if magic != _LEGACY_MAGIC:
            raise TorchFileError(f"{path}: cannot be read as a torch checkpoint (neither a zip archive nor the "
                                 f"legacy format's magic number)")
        load_header()  # protocol version
        sys_info = load_header()
        little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
        roots: dict[str, _Storage] = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
                raise TorchFileError(f"{path}: unsupported persistent id {str(pid)[:60]!r}")
            _, storage_type, root_key, _location, numel, view = pid
            dtype = _storage_dtype(storage_type)
            root = roots.setdefault(root_key, _Storage(dtype, numel))
            if view is not None:
                _view_key, offset, view_size = view
                return _Storage(dtype, view_size, base=root, offset=offset)
            return root

        obj = _Unpickler(fh, path, persistent_load).load()
        keys = _Unpickler(fh, path, _no_persistent(path)).load()
        for key in keys:
            st = roots.get(key)
            if st is None:
                raise TorchFileError(f"{path}: storage {key!r} listed but never referenced")
            (numel,) = struct.unpack("<q" if little else ">q", fh.read(8))
            dt = st.dtype if little else st.dtype.newbyteorder(">")
            raw = fh.read(numel * dt.itemsize)
            if len(raw) != numel * dt.itemsize:
                raise TorchFileError(f"{path}: truncated (storage {key!r})")
            st._data, st.numel = np.frombuffer(raw, dt), numel
        return _materialize(obj)


def _no_persistent(path):
    def f(pid):
        raise TorchFileError(f"{path}: unexpected persistent id in a header pickle")
    return f


# --------------------------------------------------------------------------------------- entry point
def load_torch_file(path: str | os.PathLike) -> dict:
    """The dict a ``torch.save`` checkpoint holds, with every tensor as a NumPy array (see module doc).

    Raises :class:`TorchFileError` for a missing / corrupt file, a non-dict top level, or a pickle that
    references anything ``torch.load(weights_only=True)`` would refuse.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TorchFileError(f"{path}: no such checkpoint file")
    try:
        obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except TorchFileError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError,
            AttributeError, IndexError, struct.error, OSError) as e:
        raise TorchFileError(f"{path}: cannot be read as a torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise TorchFileError(f"{path}: expected a dict at the top level, found {type(obj).__name__}")
    return obj


if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError("magnet_jax.convert._torch assumes a little-endian host")
