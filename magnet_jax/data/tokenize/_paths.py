"""Local and remote (``gs://``..., through etils.epath / Beam filesystems) file helpers of the tokenizer."""
from __future__ import annotations

import json
import os


def is_remote(path: str) -> bool:
    return "://" in path


def exists(path: str) -> bool:
    if is_remote(path):
        from etils import epath
        return epath.Path(path).exists()
    return os.path.exists(path)


def read_json_file(path: str) -> dict | None:
    """A JSON object from a local or remote file, else None."""
    try:
        if is_remote(path):
            from etils import epath
            obj = json.loads(epath.Path(path).read_text())
        else:
            with open(path, encoding="utf-8") as fh:
                obj = json.load(fh)
        return obj if isinstance(obj, dict) else None
    except Exception:  # noqa: BLE001 - missing, unreadable or not JSON: all mean "no usable file"
        return None


def write_json(path: str, obj) -> None:
    """Write JSON atomically (local paths) or through etils.epath, as TFDS does (``gs://`` ...)."""
    data = json.dumps(obj, indent=1, ensure_ascii=False)
    if is_remote(path):
        from etils import epath
        epath.Path(path).write_text(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems
        with FileSystems.create(path) as fh:
            fh.write(text.encode())
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
