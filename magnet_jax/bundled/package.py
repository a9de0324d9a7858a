"""The bundled model's folder: ``lm/`` (magnet-jax safetensors export), ``codec/`` (transformers EnCodec layout),
``t5/`` (tokenizer + frozen T5, HF layout), ``bundled.json`` (provenance). All read with no torch, no network.

This is the run-time side, used by the pipeline: ``MagnetPipeline.from_pretrained("bundled")`` loads the folder
packaged at :data:`~magnet_jax.bundled.config.WEIGHTS_DIR` (any folder in this layout loads the same way).
:func:`magnet_jax.bundled.build.assemble` writes one (build time).
"""
from __future__ import annotations

import os
from pathlib import Path

from magnet_jax.bundled.config import NAME, WEIGHTS_DIR

PARTS = ("lm", "codec", "t5")
INFO = "bundled.json"
LM_FILES = ("magnet_jax_lm.safetensors", "magnet_jax_config.json")


class BundledMissingError(FileNotFoundError):
    """The bundled weights are not in the package (not built yet)."""


def is_bundled_layout(folder: str | os.PathLike) -> bool:
    p = Path(folder).expanduser()
    return p.is_dir() and all((p / part).is_dir() for part in PARTS) and (p / "lm" / LM_FILES[0]).is_file()


def resolve(name_or_path: str | os.PathLike) -> Path | None:
    """The folder of a bundled-layout model: ``"bundled"`` -> the packaged weights, a folder in the layout ->
    itself; None for anything else (a hub id, a released-layout folder)."""
    if str(name_or_path) == NAME:
        if not is_bundled_layout(WEIGHTS_DIR):
            raise BundledMissingError(f"the bundled weights are not in {WEIGHTS_DIR} yet: build them with "
                                      f"`bash tools/make_bundled.sh WORKDIR` (it copies them there)")
        return WEIGHTS_DIR
    p = Path(name_or_path).expanduser()
    return p if is_bundled_layout(p) else None
