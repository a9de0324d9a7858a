"""Loading audiocraft LM checkpoints of every family, and magnet-jax's own LM folders.

:func:`load_audiocraft_checkpoint` takes a hub repo id (any repo in the released layout: ``state_dict.bin`` =
``best_state`` + ``xp.cfg``), a local folder or a ``state_dict.bin`` path, reads it without torch, and hands the
package to its family's reader, chosen by the ``xp.cfg``'s ``lm_model`` (:data:`READERS`): MAGNeT
(:mod:`~magnet_jax.convert.magnet`), Hybrid-MAGNeT (:mod:`~magnet_jax.convert.hybrid`), MusicGen / AudioGen /
MusicGen-melody (:mod:`~magnet_jax.convert.musicgen`). The T5 encoder is not in the file: the ``xp.cfg`` names it.
The converted float32 params are cached as safetensors (``$MAGNET_JAX_CACHE/lm/<key>/``); a folder holding
``magnet_jax_lm.safetensors`` + ``magnet_jax_config.json`` (:func:`save_lm_safetensors`) loads directly.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from magnet_jax import hub
from magnet_jax.convert import checkpoint, hybrid, magnet, musicgen
from magnet_jax.convert.checkpoint import LoadedCheckpoint
from magnet_jax.convert.lm_files import SAFETENSORS_NAME
from magnet_jax.model.families import family_of
from magnet_jax.model.transformer import TransformerLM

# the family's lm_model (model/families.py) -> its reader: (read state_dict.bin package, *, source, codec_source,
# cached, overrides) -> LoadedCheckpoint
READERS = {
    magnet.LM_MODEL: magnet.checkpoint_from_package,
    hybrid.HYBRID_LM_MODEL: hybrid.checkpoint_from_package,
    musicgen.LM_MODEL: musicgen.checkpoint_from_package,     # and MusicGen-melody (its config says which)
}


def family_lm_model(xp_cfg: Mapping[str, Any]) -> str | None:
    """The family's ``lm_model`` of a read ``xp.cfg``: its own, except for the hybrid_magnet branch's checkpoints,
    which carry MAGNeT's (:func:`magnet_jax.convert.hybrid.is_hybrid` tells them apart)."""
    lm_model = xp_cfg.get("lm_model")
    return hybrid.HYBRID_LM_MODEL if lm_model != musicgen.LM_MODEL and hybrid.is_hybrid(xp_cfg) else lm_model


def load_audiocraft_checkpoint(path_or_repo_id: str | os.PathLike, *, cache: bool = True,
                               **overrides) -> LoadedCheckpoint:
    """Loads an LM checkpoint (MAGNeT, Hybrid-MAGNeT, MusicGen / AudioGen) from a hub repo id (any repo in the
    released layout), a local folder (``state_dict.bin``, or a magnet-jax safetensors export) or a
    ``state_dict.bin`` path.

    ``overrides`` set run-time config fields only (``LMConfig.runtime_fields()``: ``dtype='bfloat16'``,
    ``remat=True``, ...); the architecture, the T5, the kind and the window come from the checkpoint. An
    ``lm_model`` no reader knows is read as MAGNeT, whose reader refuses it by name.
    """
    src = str(path_or_repo_id)
    overrides = checkpoint.runtime_overrides(overrides)
    local = Path(src).expanduser()
    codec_source = str(local.parent if local.is_file() else local) if local.exists() else src
    if local.is_dir() and (local / SAFETENSORS_NAME).is_file():
        return checkpoint.from_export(local, overrides, src, codec_source)
    bin_path = hub.resolve_file(src, "state_dict.bin")
    cached = hub.cache_dir("lm", checkpoint.cache_key(src, bin_path)) if cache else None
    if cached is not None:    # verified (manifest, format); a damaged entry is rebuilt from the source, saying so
        hit = checkpoint.from_cache(cached, overrides, src, codec_source, rebuilt_from=bin_path)
        if hit is not None:
            return hit
    pkg = checkpoint.read_state_dict_bin(bin_path)
    reader = READERS.get(family_lm_model(checkpoint.read_xp_cfg(pkg["xp.cfg"])), magnet.checkpoint_from_package)
    return reader(pkg, source=src, codec_source=codec_source, cached=cached, overrides=overrides)


def load_audiocraft_lm(path_or_repo_id: str | os.PathLike, *, cache: bool = True, **overrides) -> TransformerLM:
    """The LM of :func:`load_audiocraft_checkpoint` (same arguments)."""
    return load_audiocraft_checkpoint(path_or_repo_id, cache=cache, **overrides).lm


def save_lm_safetensors(lm: TransformerLM, folder: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Writes ``magnet_jax_lm.safetensors`` + ``magnet_jax_config.json`` with the model's family (its
    ``lm_model``, so that the folder loads back as one) and ``extra`` (e.g. ``t5``, ``kind``)."""
    extra = {"lm_model": family_of(lm.config).lm_model, **(dict(extra) if extra else {})}
    return checkpoint.write_safetensors(folder, checkpoint.flat_params(lm), lm.config, extra)


def load_lm_safetensors(folder: str | os.PathLike, **overrides) -> TransformerLM:
    """The LM of a folder written by :func:`save_lm_safetensors` (``overrides``: run-time fields only)."""
    return checkpoint.from_export(Path(folder), overrides, str(folder), str(folder)).lm
