"""A LoRA adapter on disk: ``adapter.safetensors`` (float32 ``{module}.{name}.{a|b}`` arrays, layers axis first)
and ``adapter_config.json`` (rank, alpha, targets, the base model's id and architecture, and the safetensors file's
size). Written at the end of a LoRA training run next to the merged export (``WORKDIR/export``); applied at load
time by ``MagnetPipeline.from_pretrained(base, adapter=PATH)`` (:func:`apply_adapter`: checked, then merged)."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from flax import nnx

from magnet_jax.model.lora import LoRAConfig, merge_into

ADAPTER_NAME = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "magnet_jax_lora"


class AdapterError(ValueError):
    """An adapter that cannot be read or does not fit the model (one line, naming the file)."""


def save_adapter(folder: str | os.PathLike, adapters: Mapping, config: LoRAConfig, *, base: str = "",
                 architecture: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Writes ``adapters`` (nested ``{module: {name: {"a", "b"}}}``, host arrays) + their config to ``folder``.
    ``base``: the id / folder of the base model they were trained on; ``architecture``: its
    ``LMConfig.architecture()``."""
    from safetensors.numpy import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = {f"{m}.{n}.{k}": np.ascontiguousarray(np.asarray(v, np.float32))
            for m, names in adapters.items() for n, ab in names.items() for k, v in ab.items()}
    tmp = folder / (ADAPTER_NAME + ".tmp")
    save_file(flat, str(tmp))
    size = tmp.stat().st_size
    os.replace(tmp, folder / ADAPTER_NAME)
    meta = {"format": FORMAT, "version": 1, **config.to_dict(), "base": str(base),
            "base_architecture": dict(architecture or {}), "bytes": size, **dict(extra or {})}
    tmp = folder / (ADAPTER_CONFIG + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / ADAPTER_CONFIG)
    return folder


def _folder(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_file() and p.name in (ADAPTER_NAME, ADAPTER_CONFIG):
        p = p.parent
    if not (p / ADAPTER_CONFIG).is_file():
        raise AdapterError(f"{str(path)!r} is not a LoRA adapter (no {ADAPTER_CONFIG} there; a training run with "
                           f"config.lora_rank > 0 writes one to WORKDIR/export)")
    return p


def load_adapter(path: str | os.PathLike) -> tuple[dict, LoRAConfig, dict]:
    """``(adapters, config, meta)`` of the adapter at ``path`` (its folder or either of its two files)."""
    from safetensors.numpy import load_file
    folder = _folder(path)
    try:
        meta = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, not {FORMAT!r}")
        config = LoRAConfig.from_dict(meta)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AdapterError(f"{str(folder / ADAPTER_CONFIG)!r} is not a valid adapter config ({e})") from None
    file = folder / ADAPTER_NAME
    if not file.is_file() or ("bytes" in meta and file.stat().st_size != meta["bytes"]):
        raise AdapterError(f"{str(file)!r} is missing or truncated (the adapter config records {meta.get('bytes')} "
                           f"bytes): copy the adapter folder again")
    try:
        flat = load_file(str(file))
    except Exception as e:   # noqa: BLE001 - safetensors raises its own error types for malformed files
        raise AdapterError(f"{str(file)!r} cannot be read ({type(e).__name__}: {e})") from None
    adapters: dict = {}
    for k, v in flat.items():
        m, n, ab = k.rsplit(".", 2)
        adapters.setdefault(m, {}).setdefault(n, {})[ab] = v
    return adapters, config, meta


def _same_source(a: str, b: str) -> bool:
    if not a or not b:
        return True
    if os.path.exists(a) and os.path.exists(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return a.rstrip("/") == b.rstrip("/")


def apply_adapter(lm: nnx.Module, path: str | os.PathLike, *, base: str = "") -> dict:
    """Merges the adapter at ``path`` into ``lm`` (in place) and returns its config file's contents. Refuses
    (:class:`AdapterError`) an adapter of another architecture or other shapes; warns when it records another base
    model than ``base`` (the id / folder ``lm`` was loaded from)."""
    adapters, config, meta = load_adapter(path)
    arch, mine = meta.get("base_architecture") or {}, lm.config.architecture()
    diff = {k: (arch[k], mine.get(k)) for k in arch if k in mine and _json(arch[k]) != _json(mine[k])}
    if diff:
        raise AdapterError(f"the adapter {str(path)!r} was trained on another architecture: (adapter, model) = {diff}")
    if not _same_source(str(meta.get("base", "")), str(base)):
        warnings.warn(f"the adapter {str(path)!r} was trained on {meta.get('base')!r}, applied to {base!r} "
                      f"(same architecture and shapes: applying it)", stacklevel=2)
    try:
        merge_into(lm, adapters, config)
    except ValueError as e:
        raise AdapterError(f"{str(path)!r}: {e}") from None
    return meta


def _json(v):
    return json.loads(json.dumps(v))
