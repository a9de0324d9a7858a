"""The bundled model's folder: ``lm/`` (magnet-jax safetensors export), ``codec/`` (transformers EnCodec layout),
``t5/`` (tokenizer + frozen T5, HF layout), ``bundled.json`` (provenance, the model's example description:
:func:`example_description`, and its decoding defaults: :func:`generation_overrides`). All read with no torch, no
network.

This is the run-time side, used by the pipeline: ``MagnetPipeline.from_pretrained("bundled")`` loads the folder
packaged at :data:`~magnet_jax.bundled.config.WEIGHTS_DIR` (any folder in this layout loads the same way).
:func:`magnet_jax.bundled.build.assemble` writes one (build time).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from magnet_jax.bundled.config import NAME, WEIGHTS_DIR

PARTS = ("lm", "codec", "t5")
INFO = "bundled.json"
LM_FILES = ("magnet_jax_lm.safetensors", "magnet_jax_config.json")
# bundled.json's key for the model's example description: a typical description of its training clips, in their
# wording (magnet_jax.bundled.build.example_description writes it), used when a job is given no text.
EXAMPLE_KEY = "example_description"
# The example of a folder whose bundled.json predates that key (or has none): a description in the corpus'
# wording (magnet_jax.bundled.descriptions) of its most common genre, the chorale.
FALLBACK_EXAMPLE = "a slow baroque chorale on church organ in A minor, 60 bpm"
# bundled.json's key for the decoding knobs (GenerationConfig field -> value) this model's weights were measured
# best with, applied over its kind's defaults when the folder is loaded (magnet_jax.pipelines.load).
GENERATION_KEY = "generation"


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


def _info(folder: str | os.PathLike) -> dict:
    """``folder``'s ``bundled.json`` as a dict; ``{}`` when it is missing, unreadable or not an object."""
    try:
        info = json.loads((Path(folder) / INFO).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def example_description(folder: str | os.PathLike) -> str:
    """The example description the bundled-layout ``folder`` records (``bundled.json``'s ``example_description``),
    else :data:`FALLBACK_EXAMPLE` (an older or missing ``bundled.json``: its model was trained on this corpus)."""
    text = _info(folder).get(EXAMPLE_KEY)
    return text.strip() if isinstance(text, str) and text.strip() else FALLBACK_EXAMPLE


def generation_overrides(folder: str | os.PathLike) -> dict:
    """The decoding defaults the bundled-layout ``folder`` records (``bundled.json``'s ``generation``: field ->
    value of the family's generation config, e.g. ``{"max_cfg_coef": 3.0}``), ``{}`` when it records none.
    A value that is not a mapping is a one-line ValueError naming the file."""
    over = _info(folder).get(GENERATION_KEY, {})
    if not isinstance(over, dict):
        raise ValueError(f"{Path(folder) / INFO}: {GENERATION_KEY!r} must map decoding knobs to values (e.g. "
                         f'{{"max_cfg_coef": 3.0}}), got {over!r}')
    return dict(over)
