"""Hybrid-MAGNeT checkpoints (``facebook/hybrid-magnet-small`` / ``-medium``, 30 s) -> ``HybridMagnetLM``.

Layout as the audiocraft ``hybrid_magnet`` branch (c44e943) would export it: the released ``state_dict.bin``
(``best_state`` + ``xp.cfg``) with MAGNeT's tensor names (its ``MagnetLMModel`` adds no parameters; the
attention masks are plain attributes, not in the state dict) and ``hybrid_magnet_32khz.yaml``'s ``xp.cfg``:
``lm_model: transformer_lm_magnet``, ``solver: hybrid_magnet``, ``codebooks_pattern.modeling: delay``
(``transformer_lm.causal: false``; the mask is built per sample). ``load_audiocraft_checkpoint`` dispatches here
when the ``xp.cfg`` says so (:func:`is_hybrid`); the rest of the file is read as a MAGNeT one.

Not verifiable without the real files (the hub is unreachable here; the branch never registered the solver):
the exact ``solver`` / ``lm_model`` strings they carry, whether their ``delay.delays`` are the default
``[0, 1, 2, 3]``, and that they were trained with the mask of this branch commit. Anything else is refused by
name (:class:`~magnet_jax.convert.checkpoint.CheckpointError`).
"""
from __future__ import annotations

from typing import Any, Mapping

from magnet_jax.convert import magnet
from magnet_jax.convert.audiocraft_xp import ExportFacts
from magnet_jax.convert.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    delays_from_xp_cfg,
    kind_from_xp_cfg,
    read_xp_cfg,
)
from magnet_jax.convert.lm_params import build_checkpoint
from magnet_jax.model import MagnetConfig
from magnet_jax.model.families import BY_NAME
from magnet_jax.model.hybrid import HybridMagnetConfig

SOLVER = "hybrid_magnet"
LM_MODEL = magnet.LM_MODEL            # the branch builds its model under MAGNeT's lm_model name
HYBRID_LM_MODEL = BY_NAME["hybrid"].lm_model   # LoadedCheckpoint.lm_model / an export's lm_model of one


def is_hybrid(cfg: Mapping[str, Any]) -> bool:
    """A read ``xp.cfg``: the hybrid solver, or a MAGNeT LM with the delay pattern (only the branch has one)."""
    modeling = (cfg.get("codebooks_pattern") or {}).get("modeling")
    return cfg.get("solver") == SOLVER or (cfg.get("lm_model") == LM_MODEL and modeling == "delay")


def _delays(cfg: Mapping[str, Any], n_q: int) -> tuple[int, ...]:
    delays = delays_from_xp_cfg(cfg, n_q, "Hybrid-MAGNeT")
    if delays != tuple(range(n_q)):
        raise CheckpointError(f"unsupported Hybrid-MAGNeT delays {list(delays)}: the branch's attention mask "
                              f"assumes 0..{n_q - 1}")
    return delays


def config_from_xp_cfg(xp_cfg: str | Mapping[str, Any], **overrides) -> HybridMagnetConfig:
    """HybridMagnetConfig from a hybrid ``xp.cfg`` (YAML string or mapping); unsupported variants refused."""
    cfg = read_xp_cfg(xp_cfg)
    if cfg.get("lm_model") != LM_MODEL:
        raise CheckpointError(f"Hybrid-MAGNeT checkpoint with lm_model={cfg.get('lm_model')!r}: expected "
                              f"{LM_MODEL!r} (the hybrid_magnet branch's config)")
    if (cfg.get("transformer_lm") or {}).get("causal", False):
        raise CheckpointError("Hybrid-MAGNeT checkpoint with transformer_lm.causal=true: the branch builds "
                              "causal=false and masks per sample")
    as_magnet = {**cfg, "codebooks_pattern": {"modeling": "parallel"}}   # every other field as MAGNeT's
    base = magnet.config_from_xp_cfg(as_magnet)
    if not (cfg.get("dataset") or {}).get("segment_duration"):
        raise CheckpointError("Hybrid-MAGNeT xp.cfg has no dataset.segment_duration (the window it was trained on)")
    try:
        return HybridMagnetConfig(**{**base.to_dict(), "delays": _delays(cfg, base.n_q), **overrides})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"xp.cfg: bad Hybrid-MAGNeT value ({e})") from None


def checkpoint_from_package(pkg: Mapping[str, Any], *, source: str, **kw) -> LoadedCheckpoint:
    """A read ``state_dict.bin`` package -> LoadedCheckpoint with ``lm_model='hybrid_magnet'`` (``kw``:
    ``codec_source``, ``cached``, ``overrides`` of :func:`magnet_jax.convert.lm_params.build_checkpoint`)."""
    return build_checkpoint(pkg, config_from_xp_cfg(pkg["xp.cfg"]), kind=kind_from_xp_cfg(pkg["xp.cfg"], source),
                            lm_model=HYBRID_LM_MODEL, source=source, **kw)


def xp_cfg_from_config(cfg: HybridMagnetConfig, facts: ExportFacts) -> dict:
    """The inverse of :func:`config_from_xp_cfg`: MAGNeT's ``xp.cfg`` with the branch's solver and delay pattern
    (audiocraft 1.3.0 loads it as a ``MagnetLMModel`` with that pattern; only the branch runs it as a hybrid)."""
    xp = magnet.xp_cfg_from_config(MagnetConfig(**{k: v for k, v in cfg.to_dict().items() if k != "delays"}), facts)
    xp["solver"] = SOLVER
    xp["codebooks_pattern"] = {"modeling": "delay", "delay": {"delays": list(cfg.delays), "flatten_first": 0,
                                                              "empty_initial": 0}, "parallel": {"empty_initial": -1}}
    return xp
