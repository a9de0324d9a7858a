"""What every audiocraft LM checkpoint shares, whatever its family: the ``xp.cfg`` (read, its T5, its kind, the
transformer fields every release has), the read ``state_dict.bin``, the facts a load returns
(:class:`LoadedCheckpoint`), and the magnet-jax LM folder (an export, or an entry of the conversion cache
``$MAGNET_JAX_CACHE/lm/<key>/``: :mod:`magnet_jax.convert.lm_files`) with the model of its family built around it.

The families' own readers are :mod:`~magnet_jax.convert.magnet`, :mod:`~magnet_jax.convert.hybrid` and
:mod:`~magnet_jax.convert.musicgen`; :mod:`~magnet_jax.convert.audiocraft` chooses between them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml
from flax import nnx, traverse_util

from magnet_jax.convert._common import InterpolationError, module_from_pure_dict, resolve_interpolations
from magnet_jax.convert._torch import TorchFileError, load_torch_file
from magnet_jax.convert.lm_files import CONFIG_NAME, SAFETENSORS_NAME, DamagedFileError, read_meta, read_params
from magnet_jax.convert.lm_files import write as write_lm_files
from magnet_jax.model.config import LMConfig
from magnet_jax.model.families import BY_NAME, FAMILIES, Family, lm_class
from magnet_jax.model.transformer import TransformerLM
from magnet_jax.text.presets import T5_MODELS, canonical_t5_name

CACHE_FORMAT = 3          # older cache entries (no checkpoint facts / no manifest) are converted again
DEFAULT_LM_MODEL = BY_NAME["magnet"].lm_model     # an export that does not record its family (the bundled model)
READ_SECTIONS = ("lm_model", "solver", "sample_rate", "transformer_lm", "dataset", "masking", "fuser",
                 "conditioners", "codebooks_pattern", "interleave_stereo_codebooks")
SOLVER_KINDS = {"magnet": "music", "audio_magnet": "audio",        # audiocraft solvers/builders.py
                "musicgen": "music", "audiogen": "audio"}
RELEASED_KINDS = {                                                   # the released repos, for an xp.cfg without
    "facebook/magnet-small-10secs": "music", "facebook/magnet-medium-10secs": "music",   # its solver
    "facebook/magnet-small-30secs": "music", "facebook/magnet-medium-30secs": "music",
    "facebook/audio-magnet-small": "audio", "facebook/audio-magnet-medium": "audio",
}
# transformer_lm fields of every released audiocraft LM; the families differ in ``causal`` (check_transformer)
RELEASED_TRANSFORMER = {"norm": "layer_norm", "norm_first": True, "bias_ff": False, "bias_attn": False,
                        "bias_proj": False, "activation": "gelu",
                        "layer_scale": None, "qk_layer_norm": False, "qk_layer_norm_cross": False, "kv_repeat": 1,
                        "xpos": False, "past_context": None}
# read into the model config (LMConfig.positional_embedding / positional_scale) rather than checked
log = logging.getLogger("magnet_jax.convert")


class CheckpointError(ValueError):
    """The file is not a (supported) audiocraft LM checkpoint."""


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """What a checkpoint says, besides its weights: the T5 it was trained with, music or audio, its window."""
    lm: TransformerLM
    t5_name: str | None          # audiocraft name (``t5-base``); None for an export that does not record it
    kind: str                    # "music" | "audio" (generation defaults; from the xp.cfg's solver)
    segment_duration: float      # seconds: the window the LM was trained on
    source: str                  # what was asked for (hub id, folder or file)
    codec_source: str            # where its EnCodec lives: the hub repo, or the checkpoint's folder
    lm_model: str = DEFAULT_LM_MODEL   # the family's ``Family.lm_model`` (model/families.py)
    channels: int = 1            # 2: stereo MusicGen (mono codec per channel, codebooks interleaved)


# ----------------------------------------------------------------------------- xp.cfg
def read_xp_cfg(xp_cfg: str | Mapping[str, Any]) -> dict:
    """The sections of an ``xp.cfg`` we read (:data:`READ_SECTIONS`), with their ``${...}`` references resolved."""
    try:
        cfg = yaml.safe_load(xp_cfg) if isinstance(xp_cfg, str) else dict(xp_cfg)
    except yaml.YAMLError as e:
        raise CheckpointError(f"xp.cfg is not valid YAML ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError("xp.cfg is not a mapping")
    try:
        return {k: resolve_interpolations(cfg[k], cfg) for k in READ_SECTIONS if k in cfg}
    except InterpolationError as e:
        raise CheckpointError(str(e)) from None


def read_t5_name(cfg: Mapping[str, Any]) -> str:
    """The T5 of a read ``xp.cfg``'s ``description`` conditioner, as audiocraft names it; refused by name when
    audiocraft's T5Conditioner would refuse it, or it asks for spaCy text normalisation."""
    desc = (cfg.get("conditioners") or {}).get("description") or {}
    if desc.get("model", "t5") != "t5":
        raise CheckpointError(f"unsupported text conditioner {desc.get('model')!r} (only T5)")
    t5 = desc.get("t5") or {}
    name = str(t5.get("name", "t5-base"))
    if canonical_t5_name(name) is None:
        raise CheckpointError(f"xp.cfg names T5 {name!r}, which audiocraft's T5Conditioner does not accept "
                              f"either (known: {sorted(T5_MODELS)})")
    if t5.get("normalize_text"):
        raise CheckpointError("unsupported: conditioners.description.t5.normalize_text=true (audiocraft's spaCy "
                              "text normalisation is not implemented; every released model has false)")
    return canonical_t5_name(name)


def t5_name_from_xp_cfg(xp_cfg: str | Mapping[str, Any]) -> str:
    """The T5 the checkpoint was trained with, as audiocraft names it (``t5-base``, ``google/flan-t5-large``)."""
    return read_t5_name(read_xp_cfg(xp_cfg))


def kind_from_xp_cfg(xp_cfg: str | Mapping[str, Any], source: str = "") -> str:
    """``'music'`` or ``'audio'``: the xp.cfg's solver (:data:`SOLVER_KINDS`); without one (or for a custom
    solver), :data:`RELEASED_KINDS` for a released repo ``source``, else the sample rate (16 kHz = audio)."""
    cfg = read_xp_cfg(xp_cfg)
    solver = cfg.get("solver")
    if solver in SOLVER_KINDS:
        return SOLVER_KINDS[solver]
    return RELEASED_KINDS.get(source) or ("audio" if int(cfg.get("sample_rate", 32000)) == 16000 else "music")


def check_transformer(cfg: Mapping[str, Any], family: str, **expected) -> None:
    """Refuses, by name, a ``transformer_lm`` field of a read ``xp.cfg`` that magnet-jax does not implement: the
    values of :data:`RELEASED_TRANSFORMER`, updated with the ``family``'s own (``causal=False`` for MAGNeT)."""
    tl = cfg.get("transformer_lm") or {}
    for key, want in {**RELEASED_TRANSFORMER, **expected}.items():
        if key in tl and tl[key] != want and not (isinstance(want, float) and float(tl[key]) == want):
            raise CheckpointError(f"unsupported {family} variant: transformer_lm.{key}={tl[key]!r} "
                                  f"(magnet-jax implements {want!r}, as in every released model)")


def read_state_dict_bin(path: str | os.PathLike) -> dict:
    """An audiocraft ``state_dict.bin`` (torch-free, allow-listed like ``torch.load(weights_only=True)``)."""
    try:
        pkg = load_torch_file(path)
    except TorchFileError as e:
        raise CheckpointError(str(e)) from None
    if "best_state" not in pkg or "xp.cfg" not in pkg:
        raise CheckpointError(f"{path}: not an audiocraft exported checkpoint (expected keys 'best_state' and "
                              f"'xp.cfg', found {sorted(map(str, pkg))[:8]})")
    return pkg


# ----------------------------------------------------------------------------- the model of a family
def flat_params(lm: nnx.Module) -> dict[str, np.ndarray]:
    """The parameters of a model, ``'.'``-flat (``{'layers.self_attn.qkv': array, ...}``)."""
    pure = nnx.to_pure_dict(nnx.state(lm, nnx.Param))
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(pure, sep=".").items()}


def lm_from_flat_params(cfg: LMConfig, flat: Mapping[str, np.ndarray]) -> TransformerLM:
    """The LM of ``cfg``'s family (model/families.py) holding ``flat``, built without random init."""
    cls = lm_class(cfg)
    return module_from_pure_dict(lambda: cls(cfg, rngs=nnx.Rngs(0)), flat, error=CheckpointError, what="LM weights")


def runtime_overrides(overrides: Mapping[str, Any]) -> dict:
    """``overrides`` when they name run-time config fields only (``LMConfig.runtime_fields()``)."""
    allowed = set(LMConfig.runtime_fields())
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise TypeError(f"cannot override {bad} when loading a checkpoint: the architecture comes from the "
                        f"checkpoint; run-time fields are {sorted(allowed)}")
    return dict(overrides)


# ----------------------------------------------------------------------------- LM folders and the cache
def write_safetensors(folder: str | os.PathLike, flat: Mapping[str, np.ndarray], cfg: LMConfig,
                      extra: Mapping[str, Any] | None = None) -> Path:
    """A magnet-jax LM folder: ``flat`` + ``cfg`` and the facts in ``extra`` (``lm_model``, ``t5``, ``kind``...)."""
    return write_lm_files(folder, flat, {"model": cfg.to_dict(), **(dict(extra) if extra else {})})


def export_family(meta: Mapping[str, Any]) -> Family:
    """The family of an LM folder: its recorded ``lm_model`` (MAGNeT when none), and among the families sharing
    it (MusicGen, MusicGen-melody) the smallest config class that has every field of the ``model`` section."""
    lm_model = meta.get("lm_model", DEFAULT_LM_MODEL)
    rows = [f for f in FAMILIES if f.lm_model == lm_model]
    if not rows:
        raise CheckpointError(f"{CONFIG_NAME} records lm_model={lm_model!r}; known: "
                              f"{sorted({f.lm_model for f in FAMILIES})}")
    keys = set(meta["model"])
    fits = [f for f in rows if keys <= {x.name for x in dataclasses.fields(f.config_class)}]
    return min(fits, key=lambda f: len(dataclasses.fields(f.config_class))) if fits else rows[0]


def from_export(folder: Path, overrides: Mapping[str, Any], source: str, codec_source: str,
                meta: dict | None = None) -> LoadedCheckpoint:
    """A magnet-jax LM folder -> LoadedCheckpoint (a damaged file: :class:`~.lm_files.DamagedFileError`)."""
    meta = read_meta(folder) if meta is None else meta
    family = export_family(meta)
    cfg = family.config_class.from_dict({**meta["model"], **runtime_overrides(overrides)})
    lm = lm_from_flat_params(cfg, read_params(folder, meta))
    return LoadedCheckpoint(lm, meta.get("t5"), meta.get("kind", "music"), cfg.segment_duration, source,
                            codec_source, family.lm_model, int(meta.get("channels", 1)))


def cache_key(source: str, file: str) -> str:
    """The cache entry of a checkpoint file: its source, real path, size and modification time."""
    st = os.stat(file)
    return hashlib.sha256(f"{source}|{os.path.realpath(file)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]


def from_cache(cached: Path, overrides: Mapping[str, Any], source: str, codec_source: str,
               rebuilt_from: str) -> LoadedCheckpoint | None:
    """The cache entry ``cached`` when it is complete, verified (manifest) and of :data:`CACHE_FORMAT`; else None
    (a damaged entry is logged, to be rebuilt from ``rebuilt_from``)."""
    if not ((cached / CONFIG_NAME).is_file() and (cached / SAFETENSORS_NAME).is_file()):
        return None
    try:
        meta = read_meta(cached)
        if meta.get("format") == CACHE_FORMAT:
            return from_export(cached, overrides, source, codec_source, meta)
    except (DamagedFileError, CheckpointError, KeyError) as e:
        log.warning("the conversion cache entry %s is damaged (%s): rebuilding it from %s", cached, e, rebuilt_from)
    return None


def write_cache_entry(cached: Path, flat: Mapping[str, np.ndarray], cfg: LMConfig, *, source: str, t5_name: str,
                      kind: str, lm_model: str, channels: int) -> Path:
    """A conversion cache entry: the checkpoint's own config (run-time overrides are not stored) and facts."""
    return write_safetensors(cached, flat, cfg, extra={"format": CACHE_FORMAT, "source": source, "t5": t5_name,
                                                       "kind": kind, "lm_model": lm_model, "channels": channels})


def delays_from_xp_cfg(cfg: Mapping[str, Any], n_q: int, family: str) -> tuple[int, ...]:
    """The codebook delays of a delay-pattern checkpoint (MusicGen, Hybrid-MAGNeT): ``codebooks_pattern.modeling``
    must be ``delay`` with ``flatten_first`` / ``empty_initial`` 0; ``delay.delays`` defaults to ``0..n_q-1``."""
    pat = cfg.get("codebooks_pattern") or {}
    if pat.get("modeling") != "delay":
        raise CheckpointError(f"{family} checkpoint with codebooks_pattern.modeling={pat.get('modeling')!r}: "
                              f"only the delay pattern ('delay') is supported, as every released {family} uses")
    delay = pat.get("delay") or {}
    if delay.get("flatten_first", 0) or delay.get("empty_initial", 0):
        raise CheckpointError(f"unsupported {family} delay pattern: flatten_first / empty_initial must be 0")
    return tuple(int(d) for d in (delay.get("delays") or range(n_q)))
