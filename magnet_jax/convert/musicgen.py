"""audiocraft MusicGen / AudioGen LM checkpoints (``lm_model: transformer_lm``) -> ``MusicGenLM``.

Same released layout as MAGNeT (``state_dict.bin`` with ``xp.cfg`` + ``best_state``) and the same tensor
names, so the key mapping is :mod:`magnet_jax.convert.lm_params`' and the T5, kind and cache are
:mod:`magnet_jax.convert.checkpoint`'s; this module reads the MusicGen-specific ``xp.cfg`` fields (causal, the
delay pattern, MusicGen-melody's ``conditioners.self_wav.chroma_stem`` and ``fuser.prepend``, stereo's
``interleave_stereo_codebooks``) and refuses what is not implemented by name (``sum`` fusers, other conditioners,
biases, ...). ``load_audiocraft_checkpoint`` dispatches here on ``xp.cfg.lm_model``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from magnet_jax.convert.audiocraft_xp import ExportFacts, shared_xp_cfg
from magnet_jax.convert.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    check_transformer,
    delays_from_xp_cfg,
    kind_from_xp_cfg,
    read_t5_name,
    read_xp_cfg,
)
from magnet_jax.convert.lm_params import build_checkpoint, params_from_state_dict, to_np
from magnet_jax.model import MusicGenConfig
from magnet_jax.model.families import BY_NAME, family_of
from magnet_jax.model.musicgen_melody import MusicGenMelodyConfig
from magnet_jax.text.presets import WIDTHS

LM_MODEL = BY_NAME["musicgen"].lm_model
CHROMA_PREFIX = "condition_provider.conditioners.self_wav"


def _validate(cfg: dict) -> None:
    if cfg.get("lm_model") != LM_MODEL:
        raise CheckpointError(f"not a MusicGen checkpoint: xp.cfg has lm_model={cfg.get('lm_model')!r}")
    check_transformer(cfg, "MusicGen", causal=True)
    delays_from_xp_cfg(cfg, int((cfg.get("transformer_lm") or {}).get("n_q", 4)), "MusicGen")
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
    cfg = read_xp_cfg(xp_cfg)
    _validate(cfg)
    tl = cfg.get("transformer_lm") or {}
    try:
        n_q = int(tl.get("n_q", 4))
        kw = dict(n_q=n_q, card=int(tl.get("card", 2048)), dim=int(tl["dim"]), num_heads=int(tl["num_heads"]),
                  num_layers=int(tl["num_layers"]), hidden_scale=int(tl.get("hidden_scale", 4)),
                  segment_duration=float((cfg.get("dataset") or {}).get("segment_duration", 30.0)),
                  max_period=float(tl.get("max_period", 10000.0)),
                  positional_embedding=str(tl.get("positional_embedding", "sin")),
                  positional_scale=float(tl.get("positional_scale", 1.0)), text_dim=WIDTHS[read_t5_name(cfg)],
                  delays=delays_from_xp_cfg(cfg, n_q, "MusicGen"))
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


def checkpoint_from_package(pkg: Mapping[str, Any], *, source: str, **kw) -> LoadedCheckpoint:
    """A read ``state_dict.bin`` package -> LoadedCheckpoint (``kw``: ``codec_source``, ``cached``, ``overrides``
    of :func:`magnet_jax.convert.lm_params.build_checkpoint`)."""
    cfg = config_from_xp_cfg(pkg["xp.cfg"])
    return build_checkpoint(pkg, cfg, kind=kind_from_xp_cfg(pkg["xp.cfg"], source), lm_model=family_of(cfg).lm_model,
                            params_fn=params_from_melody_state_dict,
                            channels=channels_from_xp_cfg(read_xp_cfg(pkg["xp.cfg"])), source=source, **kw)


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
    if window is not None and (np.shape(window) != (n_fft,) or np.abs(to_np(window) - hann).max() > 1e-3):
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
    flat["chroma_kernel"], flat["chroma_bias"] = to_np(w).T, to_np(b)
    return flat


SOLVERS = {"music": "musicgen", "audio": "audiogen"}        # audiocraft solvers/builders.py, by kind


def xp_cfg_from_config(cfg: MusicGenConfig, facts: ExportFacts) -> dict:
    """The inverse of :func:`config_from_xp_cfg` for MusicGen / AudioGen (``facts.channels=2``: the stereo layout,
    codebooks interleaved); MusicGen-melody is refused by name (its chroma conditioner is not written)."""
    if isinstance(cfg, MusicGenMelodyConfig):
        raise CheckpointError("exporting MusicGen-melody to audiocraft is not implemented (its chroma conditioner "
                              "is not written): export it with --format=magnet_jax")
    stereo = {"interleave_stereo_codebooks": {"use": True, "per_timestep": False}} if facts.channels == 2 else {}
    return shared_xp_cfg(cfg, facts, lm_model=LM_MODEL, solver=SOLVERS[facts.kind], causal=True,
                         codebooks_pattern={"modeling": "delay", "delay": {"delays": list(cfg.delays),
                                                                           "flatten_first": 0, "empty_initial": 0}},
                         sections=stereo, backend="torch")
