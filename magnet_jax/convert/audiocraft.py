"""audiocraft MAGNeT LM checkpoints -> :class:`~magnet_jax.model.MagnetLM`, plus the facts they record.

Released layout (``facebook/magnet-*`` on the hub, or any folder / repo in that layout): ``state_dict.bin`` =
``torch.save({'best_state': <LM state_dict>, 'xp.cfg': <YAML of the hydra config>, ...})``; tensors may be
float16. It is read without torch (:mod:`magnet_jax.convert._torch`). The T5 encoder is not in it: the
``xp.cfg`` names it. The converted float32 params are cached as safetensors (``$MAGNET_JAX_CACHE/lm/<key>/``);
a folder holding ``magnet_jax_lm.safetensors`` + ``magnet_jax_config.json`` (:func:`save_lm_safetensors`)
loads directly.
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

from magnet_jax import hub
from magnet_jax.configs import RELEASED
from magnet_jax.convert._common import InterpolationError, module_from_pure_dict, resolve_interpolations
from magnet_jax.convert._torch import TorchFileError, load_torch_file
from magnet_jax.convert.lm_files import CONFIG_NAME, SAFETENSORS_NAME, DamagedFileError, read_meta, read_params
from magnet_jax.model import MagnetConfig, MagnetLM, MusicGenConfig, MusicGenLM
from magnet_jax.text.presets import T5_MODELS, WIDTHS, canonical_t5_name

TEXT_PREFIX = "condition_provider.conditioners.description.output_proj"
_CACHE_FORMAT = 3          # older cache entries (no checkpoint facts / no manifest) are converted again
_SOLVER_KINDS = {"magnet": "music", "audio_magnet": "audio"}   # audiocraft solvers/builders.py
HYBRID_LM_MODEL = "hybrid_magnet"   # LoadedCheckpoint.lm_model of a Hybrid-MAGNeT (convert/hybrid.py)
_READ_SECTIONS = ("lm_model", "solver", "sample_rate", "transformer_lm", "dataset", "masking", "fuser",
                  "conditioners", "codebooks_pattern", "interleave_stereo_codebooks")
log = logging.getLogger("magnet_jax.convert")


class CheckpointError(ValueError):
    """The file is not a (supported) audiocraft MAGNeT checkpoint."""


# ----------------------------------------------------------------------------- config
def _read_xp_cfg(xp_cfg: str | Mapping[str, Any]) -> dict:
    """The sections of an ``xp.cfg`` we read, with their ``${...}`` references resolved."""
    try:
        cfg = yaml.safe_load(xp_cfg) if isinstance(xp_cfg, str) else dict(xp_cfg)
    except yaml.YAMLError as e:
        raise CheckpointError(f"xp.cfg is not valid YAML ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError("xp.cfg is not a mapping")
    try:
        return {k: resolve_interpolations(cfg[k], cfg) for k in _READ_SECTIONS if k in cfg}
    except InterpolationError as e:
        raise CheckpointError(str(e)) from None


def _t5_name(cfg: dict) -> str:
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


def _validate(cfg: dict) -> None:
    """Refuses, by name, the features the MAGNeT releases do not use (biases, causal attention, ...)."""
    lm_model = cfg.get("lm_model")
    if lm_model != "transformer_lm_magnet":
        raise CheckpointError(f"not a MAGNeT checkpoint: xp.cfg has lm_model={lm_model!r} "
                              f"(expected 'transformer_lm_magnet'; 'transformer_lm' is MusicGen)")
    tl = cfg.get("transformer_lm") or {}
    expected = {"norm": "layer_norm", "norm_first": True, "bias_ff": False, "bias_attn": False,
                "bias_proj": False, "positional_embedding": "sin", "activation": "gelu", "causal": False,
                "layer_scale": None, "qk_layer_norm": False, "qk_layer_norm_cross": False, "kv_repeat": 1,
                "xpos": False, "positional_scale": 1.0, "past_context": None}
    for key, want in expected.items():
        if key in tl and tl[key] != want and not (isinstance(want, float) and float(tl[key]) == want):
            raise CheckpointError(f"unsupported MAGNeT variant: transformer_lm.{key}={tl[key]!r} "
                                  f"(magnet-jax implements {want!r}, as in every released model)")
    modeling = (cfg.get("codebooks_pattern") or {}).get("modeling", "parallel")
    if modeling != "parallel":
        raise CheckpointError(f"unsupported codebooks_pattern.modeling={modeling!r} (MAGNeT models all codebooks "
                              f"in parallel; only 'parallel' is implemented)")
    fuser = cfg.get("fuser") or {}
    if fuser.get("cross_attention_pos_emb"):
        raise CheckpointError("unsupported: fuser.cross_attention_pos_emb=true")
    for method in ("sum", "prepend", "input_interpolate"):
        if fuser.get(method):
            raise CheckpointError(f"unsupported condition fuser: {method}={fuser[method]} (only cross-attention "
                                  f"to the text description is implemented)")
    conds = {k: v for k, v in (cfg.get("conditioners") or {}).items() if k != "args"}
    if set(conds) - {"description"}:
        raise CheckpointError(f"unsupported conditioners {sorted(conds)} (only a T5 'description')")


def config_from_xp_cfg(xp_cfg: str | Mapping[str, Any], **overrides) -> MagnetConfig:
    """MagnetConfig from an audiocraft ``xp.cfg`` (YAML string or mapping); unsupported variants are refused
    by name. ``text_dim`` is the width of the T5 the config names."""
    cfg = _read_xp_cfg(xp_cfg)
    _validate(cfg)
    tl = cfg.get("transformer_lm") or {}
    try:
        kw = dict(n_q=int(tl.get("n_q", 4)), card=int(tl.get("card", 2048)), dim=int(tl["dim"]),
                  num_heads=int(tl["num_heads"]), num_layers=int(tl["num_layers"]),
                  hidden_scale=int(tl.get("hidden_scale", 4)),
                  subcodes_context=int(tl.get("subcodes_context", 5)),
                  span_len=int((cfg.get("masking") or {}).get("span_len", tl.get("span_len", 3))),
                  frame_rate=int(tl.get("compression_model_framerate", 50)),
                  segment_duration=float((cfg.get("dataset") or {}).get("segment_duration", 10.0)),
                  max_period=float(tl.get("max_period", 10000.0)), text_dim=WIDTHS[_t5_name(cfg)])
    except KeyError as e:
        raise CheckpointError(f"xp.cfg has no transformer_lm.{e.args[0]}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"xp.cfg: bad transformer_lm value ({e})") from None
    kw.update(overrides)
    return MagnetConfig(**kw)


def t5_name_from_xp_cfg(xp_cfg: str | Mapping[str, Any]) -> str:
    """The T5 the checkpoint was trained with, as audiocraft names it (``t5-base``, ``google/flan-t5-large``)."""
    return _t5_name(_read_xp_cfg(xp_cfg))


def kind_from_xp_cfg(xp_cfg: str | Mapping[str, Any], source: str = "") -> str:
    """``'music'`` or ``'audio'``: the xp.cfg's solver (``magnet`` / ``audio_magnet``); without one (or for a
    custom solver), the released table (:data:`magnet_jax.configs.RELEASED`) for a released repo, else the
    sample rate (16 kHz = audio)."""
    cfg = _read_xp_cfg(xp_cfg)
    solver = cfg.get("solver")
    if solver in _SOLVER_KINDS:
        return _SOLVER_KINDS[solver]
    released = next((r["kind"] for r in RELEASED.values() if r["hub"] == source), None)
    return released or ("audio" if int(cfg.get("sample_rate", 32000)) == 16000 else "music")


# ----------------------------------------------------------------------------- params
def _to_np(t) -> np.ndarray:
    if hasattr(t, "detach"):  # a torch tensor (callers converting an in-memory torch model)
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, dtype=np.float32)   # float16 / bfloat16 arrays from the file: exact widening


def params_from_state_dict(sd: Mapping[str, Any], cfg: MagnetConfig) -> dict[str, np.ndarray]:
    """audiocraft state_dict -> flat ``{'layers.self_attn.qkv': array, ...}`` in magnet-jax layouts."""
    D, H, L, K = cfg.dim, cfg.num_heads, cfg.num_layers, cfg.n_q
    hd = D // H
    need = set(sd)

    def get(key, shape):
        if key not in sd:
            raise CheckpointError(f"state_dict has no {key!r}: not a MAGNeT LM state_dict, or config mismatch")
        need.discard(key)
        a = _to_np(sd[key])
        if tuple(a.shape) != tuple(shape):
            raise CheckpointError(f"{key}: shape {tuple(a.shape)} != expected {tuple(shape)} from the config")
        return a

    def layer(name, shape):
        return [get(f"transformer.layers.{i}.{name}", shape) for i in range(L)]

    out = {
        "emb": np.stack([get(f"emb.{k}.weight", (cfg.card + 1, D)) for k in range(K)]),
        "text_kernel": get(f"{TEXT_PREFIX}.weight", (D, cfg.text_dim)).T,
        "text_bias": get(f"{TEXT_PREFIX}.bias", (D,)),
        "heads": np.stack([get(f"linears.{k}.weight", (cfg.card, D)).T for k in range(K)]),
        "out_norm.scale": get("out_norm.weight", (D,)),
        "out_norm.bias": get("out_norm.bias", (D,)),
    }
    sa = np.stack(layer("self_attn.in_proj_weight", (3 * D, D)))            # [L, 3D, D]
    out["layers.self_attn.qkv"] = sa.reshape(L, 3, H, hd, D).transpose(0, 4, 1, 2, 3)
    xa = np.stack(layer("cross_attention.in_proj_weight", (3 * D, D)))
    out["layers.cross_attn.q"] = xa[:, :D].reshape(L, H, hd, D).transpose(0, 3, 1, 2)
    out["layers.cross_attn.kv"] = xa[:, D:].reshape(L, 2, H, hd, D).transpose(0, 4, 1, 2, 3)
    for ours, theirs in (("self_attn.out", "self_attn.out_proj.weight"),
                         ("cross_attn.out", "cross_attention.out_proj.weight")):
        w = np.stack(layer(theirs, (D, D)))                                   # [L, out, in]
        out[f"layers.{ours}"] = w.transpose(0, 2, 1).reshape(L, H, hd, D)
    out["layers.ffn.w1"] = np.stack(layer("linear1.weight", (cfg.ffn_dim, D))).transpose(0, 2, 1)
    out["layers.ffn.w2"] = np.stack(layer("linear2.weight", (D, cfg.ffn_dim))).transpose(0, 2, 1)
    for ours, theirs in (("norm1", "norm1"), ("norm_cross", "norm_cross"), ("norm2", "norm2")):
        out[f"layers.{ours}.scale"] = np.stack(layer(f"{theirs}.weight", (D,)))
        out[f"layers.{ours}.bias"] = np.stack(layer(f"{theirs}.bias", (D,)))
    if need:
        raise CheckpointError(f"state_dict has {len(need)} unexpected tensors, e.g. {sorted(need)[:5]}")
    return out


def to_audiocraft_state_dict(lm: MagnetLM) -> dict[str, np.ndarray]:
    """The inverse of :func:`params_from_state_dict` (float32 numpy arrays, audiocraft key names)."""
    cfg = lm.config
    D, L = cfg.dim, cfg.num_layers
    p = flat_params(lm)
    sd = {f"emb.{k}.weight": p["emb"][k] for k in range(cfg.n_q)}
    sd.update({f"linears.{k}.weight": p["heads"][k].T for k in range(cfg.n_q)})
    sd[f"{TEXT_PREFIX}.weight"] = p["text_kernel"].T
    sd[f"{TEXT_PREFIX}.bias"] = p["text_bias"]
    sd["out_norm.weight"], sd["out_norm.bias"] = p["out_norm.scale"], p["out_norm.bias"]
    for i in range(L):
        pre = f"transformer.layers.{i}."
        sd[pre + "self_attn.in_proj_weight"] = p["layers.self_attn.qkv"][i].transpose(1, 2, 3, 0).reshape(3 * D, D)
        q = p["layers.cross_attn.q"][i].transpose(1, 2, 0).reshape(D, D)
        kv = p["layers.cross_attn.kv"][i].transpose(1, 2, 3, 0).reshape(2 * D, D)
        sd[pre + "cross_attention.in_proj_weight"] = np.concatenate([q, kv])
        sd[pre + "self_attn.out_proj.weight"] = p["layers.self_attn.out"][i].reshape(D, D).T
        sd[pre + "cross_attention.out_proj.weight"] = p["layers.cross_attn.out"][i].reshape(D, D).T
        sd[pre + "linear1.weight"] = p["layers.ffn.w1"][i].T
        sd[pre + "linear2.weight"] = p["layers.ffn.w2"][i].T
        for n in ("norm1", "norm_cross", "norm2"):
            sd[pre + f"{n}.weight"] = p[f"layers.{n}.scale"][i]
            sd[pre + f"{n}.bias"] = p[f"layers.{n}.bias"][i]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def flat_params(lm: MagnetLM) -> dict[str, np.ndarray]:
    pure = nnx.to_pure_dict(nnx.state(lm, nnx.Param))
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(pure, sep=".").items()}


def lm_from_flat_params(cfg: MagnetConfig, flat: Mapping[str, np.ndarray]) -> MagnetLM:
    """Builds a MagnetLM (a MusicGenLM for a MusicGenConfig) without random init (abstract model + the arrays)."""
    cls = MusicGenLM if isinstance(cfg, MusicGenConfig) else MagnetLM
    if getattr(cfg, "delays", None) is not None and isinstance(cfg, MagnetConfig):   # Hybrid-MAGNeT
        from magnet_jax.model.hybrid import HybridMagnetLM as cls
    if hasattr(cfg, "n_chroma"):                         # MusicGen-melody (function-level: no import cycle)
        from magnet_jax.model.musicgen_melody import MusicGenMelodyLM as cls
    return module_from_pure_dict(lambda: cls(cfg, rngs=nnx.Rngs(0)), flat, error=CheckpointError, what="LM weights")


def lm_from_state_dict(sd: Mapping[str, Any], cfg: MagnetConfig) -> MagnetLM:
    return lm_from_flat_params(cfg, params_from_state_dict(sd, cfg))


# ----------------------------------------------------------------------------- files
@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """What a checkpoint says, besides its weights: the T5 it was trained with, music or audio, its window."""
    lm: MagnetLM
    t5_name: str | None          # audiocraft name (``t5-base``); None for an export that does not record it
    kind: str                    # "music" | "audio" (generation defaults; from the xp.cfg's solver)
    segment_duration: float      # seconds: the window the LM was trained on
    source: str                  # what was asked for (hub id, folder or file)
    codec_source: str            # where its EnCodec lives: the hub repo, or the checkpoint's folder
    lm_model: str = "transformer_lm_magnet"
    channels: int = 1            # 2: stereo MusicGen (mono codec per channel, codebooks interleaved)


def save_lm_safetensors(lm: MagnetLM, folder: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Writes ``magnet_jax_lm.safetensors`` + ``magnet_jax_config.json`` (``extra``: e.g. ``t5``, ``kind``)."""
    if getattr(lm.config, "delays", None) is not None and isinstance(lm.config, MagnetConfig):
        extra = {"lm_model": HYBRID_LM_MODEL, **(dict(extra) if extra else {})}     # Hybrid-MAGNeT
    elif isinstance(lm.config, MusicGenConfig):       # MusicGen (e.g. a fine-tuned export): load it back as one
        extra = {"lm_model": "transformer_lm", **(dict(extra) if extra else {})}
    return _write_safetensors(folder, flat_params(lm), lm.config, extra)


def _write_safetensors(folder, flat: Mapping[str, np.ndarray], cfg: MagnetConfig, extra=None) -> Path:
    from magnet_jax.convert import lm_files
    return lm_files.write(folder, flat, {"model": cfg.to_dict(), **(dict(extra) if extra else {})})


def _runtime_overrides(overrides: Mapping[str, Any]) -> dict:
    allowed = set(MagnetConfig.runtime_fields())
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise TypeError(f"cannot override {bad} when loading a checkpoint: the architecture comes from the "
                        f"checkpoint; run-time fields are {sorted(allowed)}")
    return dict(overrides)


def _from_export(folder: Path, overrides: Mapping[str, Any], source: str, codec_source: str,
                 meta: dict | None = None) -> LoadedCheckpoint:
    meta = read_meta(folder) if meta is None else meta     # a damaged file: DamagedFileError, naming it
    cfg_cls = MusicGenConfig if meta.get("lm_model") == "transformer_lm" else MagnetConfig
    if meta.get("lm_model") == HYBRID_LM_MODEL:
        from magnet_jax.model.hybrid import HybridMagnetConfig as cfg_cls
    if "n_chroma" in meta["model"]:                      # MusicGen-melody
        from magnet_jax.model.musicgen_melody import MusicGenMelodyConfig as cfg_cls
    cfg = cfg_cls.from_dict({**meta["model"], **_runtime_overrides(overrides)})
    lm = lm_from_flat_params(cfg, read_params(folder, meta))
    return LoadedCheckpoint(lm, meta.get("t5"), meta.get("kind", "music"), cfg.segment_duration, source,
                            codec_source, meta.get("lm_model", "transformer_lm_magnet"), int(meta.get("channels", 1)))


def load_lm_safetensors(folder: str | os.PathLike, **overrides) -> MagnetLM:
    return _from_export(Path(folder), overrides, str(folder), str(folder)).lm


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


def _check_text_width(sd: Mapping[str, Any], t5_name: str) -> None:
    """The T5 width the LM was trained on is the output projection's input size: it must be the named T5's."""
    w = sd.get(f"{TEXT_PREFIX}.weight")
    if w is None:
        raise CheckpointError(f"state_dict has no {TEXT_PREFIX}.weight: not a MAGNeT LM with a T5 description")
    if np.shape(w)[-1] != WIDTHS[t5_name]:
        raise CheckpointError(f"the checkpoint's text projection takes {np.shape(w)[-1]}-dim T5 states, but its "
                              f"xp.cfg names {t5_name} ({WIDTHS[t5_name]}-dim): inconsistent checkpoint")


def _cache_key(source: str, file: str) -> str:
    st = os.stat(file)
    return hashlib.sha256(f"{source}|{os.path.realpath(file)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]


def load_audiocraft_checkpoint(path_or_repo_id: str | os.PathLike, *, cache: bool = True,
                               **overrides) -> LoadedCheckpoint:
    """Loads a MAGNeT checkpoint from a hub repo id (any repo in the released layout), a local folder
    (``state_dict.bin``, or a magnet-jax safetensors export) or a ``state_dict.bin`` path.

    ``overrides`` set run-time config fields only (``MagnetConfig.runtime_fields()``: ``dtype='bfloat16'``,
    ``remat=True``, ...); the architecture, the T5, the kind and the window come from the checkpoint.
    """
    src = str(path_or_repo_id)
    overrides = _runtime_overrides(overrides)
    local = Path(src).expanduser()
    codec_source = str(local.parent if local.is_file() else local) if local.exists() else src
    if local.is_dir() and (local / SAFETENSORS_NAME).is_file():
        return _from_export(local, overrides, src, codec_source)
    bin_path = hub.resolve_file(src, "state_dict.bin")
    cached = hub.cache_dir("lm", _cache_key(src, bin_path)) if cache else None
    if cached is not None and (cached / CONFIG_NAME).is_file() and (cached / SAFETENSORS_NAME).is_file():
        try:            # verified (manifest, format); a damaged entry is rebuilt from the source, saying so
            meta = read_meta(cached)
            if meta.get("format") == _CACHE_FORMAT:
                return _from_export(cached, overrides, src, codec_source, meta)
        except (DamagedFileError, CheckpointError, KeyError) as e:
            log.warning("the conversion cache entry %s is damaged (%s): rebuilding it from %s", cached, e, bin_path)
    pkg = read_state_dict_bin(bin_path)
    kw = dict(source=src, codec_source=codec_source, cached=cached, overrides=overrides)
    raw = _read_xp_cfg(pkg["xp.cfg"])
    if raw.get("lm_model") == "transformer_lm":   # MusicGen / AudioGen
        from magnet_jax.convert import musicgen  # function-level: convert.musicgen imports this module
        return musicgen.checkpoint_from_package(pkg, **kw)
    from magnet_jax.convert import hybrid  # function-level: convert.hybrid imports this module
    if hybrid.is_hybrid(raw):   # Hybrid-MAGNeT (the audiocraft hybrid_magnet branch)
        return hybrid.checkpoint_from_package(pkg, **kw)
    return checkpoint_from_package(pkg, config_from_xp_cfg(pkg["xp.cfg"]), kind=kind_from_xp_cfg(pkg["xp.cfg"], src),
                                   lm_model="transformer_lm_magnet", **kw)


def checkpoint_from_package(pkg: Mapping[str, Any], cfg: MagnetConfig, *, kind: str, lm_model: str, source: str,
                            codec_source: str, cached: Path | None, overrides: Mapping[str, Any],
                            params_fn=params_from_state_dict, channels: int = 1) -> LoadedCheckpoint:
    """A read ``state_dict.bin`` package and its parsed config -> LoadedCheckpoint, for every LM family
    (MAGNeT here; MusicGen / Hybrid-MAGNeT pass their config, kind, ``lm_model`` and key mapping): checks the T5
    width, maps the keys (``params_fn``), writes the safetensors cache entry (if ``cached``) and builds the LM."""
    t5_name = _t5_name(_read_xp_cfg(pkg["xp.cfg"]))
    _check_text_width(pkg["best_state"], t5_name)
    flat = params_fn(pkg["best_state"], cfg)
    if cached is not None:   # cached with the checkpoint's own config; run-time overrides are not stored
        _write_safetensors(cached, flat, cfg, extra={"format": _CACHE_FORMAT, "source": source, "t5": t5_name,
                                                      "kind": kind, "lm_model": lm_model, "channels": channels})
    lm = lm_from_flat_params(cfg.replace(**overrides), flat)
    return LoadedCheckpoint(lm, t5_name, kind, cfg.segment_duration, source, codec_source, lm_model, channels)


def load_audiocraft_lm(path_or_repo_id: str | os.PathLike, *, cache: bool = True, **overrides) -> MagnetLM:
    """The LM of :func:`load_audiocraft_checkpoint` (same arguments)."""
    return load_audiocraft_checkpoint(path_or_repo_id, cache=cache, **overrides).lm
