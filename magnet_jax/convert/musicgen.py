"""audiocraft MusicGen / AudioGen LM checkpoints (``lm_model: transformer_lm``) -> ``MusicGenLM``.

Same released layout as MAGNeT (``state_dict.bin`` with ``xp.cfg`` + ``best_state``) and the same tensor
names, so the key mapping and the safetensors cache are :mod:`magnet_jax.convert.audiocraft`'s; this module
reads the MusicGen-specific ``xp.cfg`` fields (causal, the delay pattern) and refuses what is not
implemented by name (melody's chroma conditioner, ``prepend`` / ``sum`` fusers, biases, ...).
``load_audiocraft_checkpoint`` dispatches here on ``xp.cfg.lm_model``.
"""
from __future__ import annotations

from typing import Any, Mapping

from magnet_jax.convert.audiocraft import (
    CheckpointError,
    LoadedCheckpoint,
    _check_text_width,
    _read_xp_cfg,
    _t5_name,
    _write_safetensors,
    lm_from_flat_params,
    params_from_state_dict,
)
from magnet_jax.model import MusicGenConfig
from magnet_jax.text.presets import WIDTHS

LM_MODEL = "transformer_lm"
_SOLVER_KINDS = {"musicgen": "music", "audiogen": "audio"}        # audiocraft solvers/builders.py
_EXPECTED = {"norm": "layer_norm", "norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False,
             "positional_embedding": "sin", "activation": "gelu", "causal": True, "layer_scale": None,
             "qk_layer_norm": False, "qk_layer_norm_cross": False, "kv_repeat": 1, "xpos": False,
             "positional_scale": 1.0, "past_context": None}


def _validate(cfg: dict) -> None:
    if cfg.get("lm_model") != LM_MODEL:
        raise CheckpointError(f"not a MusicGen checkpoint: xp.cfg has lm_model={cfg.get('lm_model')!r}")
    tl = cfg.get("transformer_lm") or {}
    for key, want in _EXPECTED.items():
        if key in tl and tl[key] != want and not (isinstance(want, float) and float(tl[key]) == want):
            raise CheckpointError(f"unsupported MusicGen variant: transformer_lm.{key}={tl[key]!r} "
                                  f"(magnet-jax implements {want!r}, as in every released model)")
    pat = cfg.get("codebooks_pattern") or {}
    if pat.get("modeling") != "delay":
        raise CheckpointError(f"unsupported codebooks_pattern.modeling={pat.get('modeling')!r} (only 'delay', "
                              f"as in every released MusicGen)")
    delay = pat.get("delay") or {}
    if delay.get("flatten_first", 0) or delay.get("empty_initial", 0):
        raise CheckpointError("unsupported delay pattern: flatten_first / empty_initial must be 0")
    fuser = cfg.get("fuser") or {}
    for method in ("sum", "prepend", "input_interpolate"):
        if fuser.get(method):
            raise CheckpointError(f"unsupported condition fuser {method}={fuser[method]} (MusicGen-melody's chroma "
                                  f"conditioner is not implemented; only the T5 text description)")
    if fuser.get("cross_attention_pos_emb"):
        raise CheckpointError("unsupported: fuser.cross_attention_pos_emb=true")
    conds = {k for k in (cfg.get("conditioners") or {}) if k != "args"}
    if conds - {"description"}:
        raise CheckpointError(f"unsupported conditioners {sorted(conds)} (only a T5 'description')")


def config_from_xp_cfg(xp_cfg: str | Mapping[str, Any], **overrides) -> MusicGenConfig:
    """MusicGenConfig from an audiocraft MusicGen / AudioGen ``xp.cfg`` (YAML string or mapping)."""
    cfg = _read_xp_cfg(xp_cfg)
    _validate(cfg)
    tl = cfg.get("transformer_lm") or {}
    try:
        n_q = int(tl.get("n_q", 4))
        delays = (cfg["codebooks_pattern"].get("delay") or {}).get("delays") or list(range(n_q))
        kw = dict(n_q=n_q, card=int(tl.get("card", 2048)), dim=int(tl["dim"]), num_heads=int(tl["num_heads"]),
                  num_layers=int(tl["num_layers"]), hidden_scale=int(tl.get("hidden_scale", 4)),
                  segment_duration=float((cfg.get("dataset") or {}).get("segment_duration", 30.0)),
                  max_period=float(tl.get("max_period", 10000.0)), text_dim=WIDTHS[_t5_name(cfg)],
                  delays=tuple(int(d) for d in delays))
        return MusicGenConfig(**{**kw, **overrides})
    except KeyError as e:
        raise CheckpointError(f"xp.cfg has no transformer_lm.{e.args[0]}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"xp.cfg: bad MusicGen value ({e})") from None


def kind_from_xp_cfg(cfg: dict) -> str:
    solver = cfg.get("solver")
    if solver in _SOLVER_KINDS:
        return _SOLVER_KINDS[solver]
    return "audio" if int(cfg.get("sample_rate", 32000)) == 16000 else "music"


def checkpoint_from_package(pkg: Mapping[str, Any], *, source: str, codec_source: str, cached, overrides,
                            cache_format: int) -> LoadedCheckpoint:
    """A read ``state_dict.bin`` package -> LoadedCheckpoint (and the safetensors cache entry, if ``cached``)."""
    cfg = config_from_xp_cfg(pkg["xp.cfg"])
    raw = _read_xp_cfg(pkg["xp.cfg"])
    t5_name, kind = _t5_name(raw), kind_from_xp_cfg(raw)
    _check_text_width(pkg["best_state"], t5_name)
    flat = params_from_state_dict(pkg["best_state"], cfg)
    if cached is not None:   # cached with the checkpoint's own config; run-time overrides are not stored
        _write_safetensors(cached, flat, cfg, extra={"format": cache_format, "source": source, "t5": t5_name,
                                                      "kind": kind, "lm_model": LM_MODEL})
    lm = lm_from_flat_params(cfg.replace(**overrides), flat)
    return LoadedCheckpoint(lm, t5_name, kind, cfg.segment_duration, source, codec_source, LM_MODEL)
