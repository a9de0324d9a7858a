"""audiocraft MusicGen / AudioGen LM checkpoints (``lm_model: transformer_lm``) -> ``MusicGenLM``.

Same released layout as MAGNeT (``state_dict.bin`` with ``xp.cfg`` + ``best_state``) and the same tensor
names, so the key mapping and the safetensors cache are :mod:`magnet_jax.convert.audiocraft`'s; this module
reads the MusicGen-specific ``xp.cfg`` fields (causal, the delay pattern, MusicGen-melody's
``conditioners.self_wav.chroma_stem`` and ``fuser.prepend``, stereo's ``interleave_stereo_codebooks``) and refuses
what is not implemented by name (``sum`` fusers, other conditioners, biases, ...).
``load_audiocraft_checkpoint`` dispatches here on ``xp.cfg.lm_model``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from magnet_jax.convert import audiocraft
from magnet_jax.convert.audiocraft import (
    CheckpointError,
    LoadedCheckpoint,
    _read_xp_cfg,
    _t5_name,
    params_from_state_dict,
)
from magnet_jax.model import MusicGenConfig
from magnet_jax.model.musicgen_melody import MusicGenMelodyConfig
from magnet_jax.text.presets import WIDTHS

LM_MODEL = "transformer_lm"
CHROMA_PREFIX = "condition_provider.conditioners.self_wav"
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
    for method in ("sum", "input_interpolate"):
        if fuser.get(method):
            raise CheckpointError(f"unsupported condition fuser {method}={fuser[method]} (only cross-attention and "
                                  f"prepend of the T5 description / the melody chroma)")
    if fuser.get("cross_attention_pos_emb"):
        raise CheckpointError("unsupported: fuser.cross_attention_pos_emb=true")
    conds = {k for k in (cfg.get("conditioners") or {}) if k != "args"}
    if conds - {"description", "self_wav"} or "description" not in conds:
        raise CheckpointError(f"unsupported conditioners {sorted(conds)} (a T5 'description', optionally MusicGen-"
                              f"melody's chroma 'self_wav')")
    prepend = set(fuser.get("prepend") or [])
    cross = set(fuser["cross"] or []) if fuser.get("cross") is not None else {"description"} - prepend
    if "self_wav" in conds:
        wav = cfg["conditioners"]["self_wav"]
        if wav.get("model") != "chroma_stem":
            raise CheckpointError(f"unsupported self_wav conditioner {wav.get('model')!r} (only chroma_stem)")
        extra = {k: v for k, v in (wav.get("chroma_stem") or {}).items()
                 if k in ("nfft", "winlen", "winhop") and v is not None or k == "norm" and float(v) != float("inf")}
        if extra:
            raise CheckpointError(f"unsupported chroma_stem settings {extra} (n_fft = window = 2**radix2_exp, hop "
                                  f"window/4, inf norm, as every release)")
        if "self_wav" not in prepend:
            raise CheckpointError("unsupported: the self_wav chroma must be fused by prepend (as MusicGen-melody)")
    if prepend - conds or cross - conds or ("description" in prepend) == ("description" in cross):
        raise CheckpointError(f"unsupported fuser prepend={sorted(prepend)} cross={sorted(cross)}: the description "
                              f"goes in exactly one of them")
    stereo = cfg.get("interleave_stereo_codebooks") or {}
    if stereo.get("use") and stereo.get("per_timestep"):
        raise CheckpointError("unsupported: interleave_stereo_codebooks.per_timestep=true (only codebook interleaving, "
                              "as the released stereo models)")


def channels_from_xp_cfg(cfg: dict) -> int:
    """2 for the stereo models (the codec runs per channel, codebooks interleaved), else 1."""
    return 2 if (cfg.get("interleave_stereo_codebooks") or {}).get("use") else 1


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
        wav = (cfg.get("conditioners") or {}).get("self_wav")
        if wav is None:
            return MusicGenConfig(**{**kw, **overrides})
        cs = wav.get("chroma_stem") or {}
        prepend = set((cfg.get("fuser") or {}).get("prepend") or [])
        kw.update(n_chroma=int(cs.get("n_chroma", 12)), chroma_radix2_exp=int(cs.get("radix2_exp", 12)),
                  chroma_argmax=bool(cs.get("argmax", False)),
                  chroma_sample_rate=int(cs.get("sample_rate", cfg.get("sample_rate", 32000))),
                  text_fuse="prepend" if "description" in prepend else "cross")
        return MusicGenMelodyConfig(**{**kw, **overrides})
    except KeyError as e:
        raise CheckpointError(f"xp.cfg has no transformer_lm.{e.args[0]}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"xp.cfg: bad MusicGen value ({e})") from None


def kind_from_xp_cfg(cfg: dict) -> str:
    solver = cfg.get("solver")
    if solver in _SOLVER_KINDS:
        return _SOLVER_KINDS[solver]
    return "audio" if int(cfg.get("sample_rate", 32000)) == 16000 else "music"


def checkpoint_from_package(pkg: Mapping[str, Any], **kw) -> LoadedCheckpoint:
    """A read ``state_dict.bin`` package -> LoadedCheckpoint (``kw``: as
    :func:`magnet_jax.convert.audiocraft.checkpoint_from_package`)."""
    raw = _read_xp_cfg(pkg["xp.cfg"])
    return audiocraft.checkpoint_from_package(pkg, config_from_xp_cfg(pkg["xp.cfg"]), kind=kind_from_xp_cfg(raw),
                                              lm_model=LM_MODEL, params_fn=params_from_melody_state_dict,
                                              channels=channels_from_xp_cfg(raw), **kw)


def params_from_melody_state_dict(sd: Mapping[str, Any], cfg: MusicGenConfig) -> dict:
    """:func:`params_from_state_dict` plus MusicGen-melody's chroma ``output_proj``; a model without
    cross-attention (``fuser.cross: []``) gets zero cross-attention weights (unused: see model/musicgen_melody)."""
    if not isinstance(cfg, MusicGenMelodyConfig):
        return params_from_state_dict(sd, cfg)
    sd = dict(sd)
    n, D = cfg.n_chroma, cfg.dim
    w, b = sd.pop(f"{CHROMA_PREFIX}.output_proj.weight", None), sd.pop(f"{CHROMA_PREFIX}.output_proj.bias", None)
    if w is None or b is None or np.shape(w) != (D, n) or np.shape(b) != (D,):
        raise CheckpointError(f"state_dict has no {CHROMA_PREFIX}.output_proj of shape ({D}, {n}): not a MusicGen-"
                              f"melody LM matching its xp.cfg")
    window = sd.pop(f"{CHROMA_PREFIX}.chroma.spec.window", None)    # torchaudio's buffer: must be hann(n_fft)
    n_fft = 2 ** cfg.chroma_radix2_exp
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    if window is not None and (np.shape(window) != (n_fft,) or np.abs(_np(window) - hann).max() > 1e-3):
        raise CheckpointError(f"{CHROMA_PREFIX}.chroma.spec.window is not a {n_fft}-point hann window")
    pre = "transformer.layers.0."
    if pre + "cross_attention.in_proj_weight" not in sd:      # no cross-attention: unused zero weights
        for i in range(cfg.num_layers):
            p = f"transformer.layers.{i}."
            sd[p + "cross_attention.in_proj_weight"] = np.zeros((3 * D, D), np.float32)
            sd[p + "cross_attention.out_proj.weight"] = np.zeros((D, D), np.float32)
            sd[p + "norm_cross.weight"], sd[p + "norm_cross.bias"] = np.ones(D, np.float32), np.zeros(D, np.float32)
    elif cfg.text_fuse == "prepend":
        raise CheckpointError("the checkpoint has cross-attention weights but its fuser prepends the description")
    flat = params_from_state_dict(sd, cfg)
    flat["chroma_kernel"], flat["chroma_bias"] = _np(w).T, _np(b)
    return flat


def _np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, np.float32)
