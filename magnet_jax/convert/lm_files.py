"""The two files of a magnet-jax LM folder (an export, the bundled model's ``lm/``, or an entry of the
conversion cache ``$MAGNET_JAX_CACHE/lm/<key>/``): ``magnet_jax_lm.safetensors`` (the float32 params) and
``magnet_jax_config.json`` (the config, the checkpoint facts, and a manifest of the safetensors file: its size
and CRC-32, written with it and verified on load). A missing, truncated or malformed file is a
:class:`DamagedFileError` naming the file and its format; the loader rebuilds a damaged cache entry from its
source checkpoint (:func:`magnet_jax.convert.audiocraft.load_audiocraft_checkpoint`)."""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

SAFETENSORS_NAME = "magnet_jax_lm.safetensors"
CONFIG_NAME = "magnet_jax_config.json"
MANIFEST_KEY = "safetensors"     # {"bytes": int, "crc32": "8 hex digits"} in magnet_jax_config.json
_RESTORE = "restore the file (reinstall / copy the folder again, or export the model again)"


class DamagedFileError(ValueError):
    """A file of an LM folder is missing, truncated, or not in its format (one line, naming the file)."""


def crc32(path: str | os.PathLike) -> str:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def write(folder: str | os.PathLike, flat: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Writes both files (each to a temp name, then renamed); the config, written last, records the size and
    CRC-32 of the safetensors file, so an interrupted write is found on load, never trusted."""
    from safetensors.numpy import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (SAFETENSORS_NAME + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in flat.items()}, str(tmp))
    manifest = {"bytes": tmp.stat().st_size, "crc32": crc32(tmp)}
    os.replace(tmp, folder / SAFETENSORS_NAME)
    tmp = folder / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps({**dict(meta), MANIFEST_KEY: manifest}, indent=1))
    os.replace(tmp, folder / CONFIG_NAME)
    return folder


def read_meta(folder: str | os.PathLike) -> dict:
    """``magnet_jax_config.json``: a JSON object with a ``model`` section."""
    path = Path(folder) / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DamagedFileError(f"{str(path)!r} is missing (the LM config of this folder): {_RESTORE}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DamagedFileError(f"{str(path)!r} cannot be read ({getattr(e, 'strerror', None) or e}): "
                               f"{_RESTORE}") from None
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise DamagedFileError(f"{str(path)!r} is not valid JSON ({e}), the format of the LM config: "
                               f"{_RESTORE}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise DamagedFileError(f"{str(path)!r} is not a magnet-jax LM config (a JSON object with a 'model' "
                               f"section): {_RESTORE}")
    return meta


def read_params(folder: str | os.PathLike, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The params in ``magnet_jax_lm.safetensors``, checked against the manifest in ``meta`` (when the folder
    was written with one: the bundled model and older exports have none)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    path = Path(folder) / SAFETENSORS_NAME
    want = meta.get(MANIFEST_KEY)
    try:
        if isinstance(want, dict):
            size = path.stat().st_size
            if size != want.get("bytes"):
                raise DamagedFileError(f"{str(path)!r} has {size} bytes, {CONFIG_NAME} records {want.get('bytes')}: "
                                       f"the safetensors file is truncated or was replaced; {_RESTORE}")
            if crc32(path) != want.get("crc32"):
                raise DamagedFileError(f"{str(path)!r} does not match the CRC-32 recorded in {CONFIG_NAME}: the "
                                       f"safetensors file is damaged; {_RESTORE}")
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        reason = " ".join(str(getattr(e, "strerror", None) or e).split())
        raise DamagedFileError(f"{str(path)!r} is not a readable safetensors file ({reason}): it is damaged or "
                               f"truncated; {_RESTORE}") from None
