"""audiocraft MAGNeT LM checkpoints (``lm_model: transformer_lm_magnet``) -> :class:`~magnet_jax.model.MagnetLM`.

Released layout (``facebook/magnet-*`` on the hub, or any folder / repo in that layout): ``state_dict.bin`` =
``torch.save({'best_state': <LM state_dict>, 'xp.cfg': <YAML of the hydra config>, ...})``; tensors may be
float16. This module reads MAGNeT's ``xp.cfg`` fields (:func:`config_from_xp_cfg`) and refuses what is not
implemented by name; the tensor names are audiocraft's shared LM layout (:mod:`magnet_jax.convert.lm_params`),
the T5, kind and cache are :mod:`magnet_jax.convert.checkpoint`'s.
"""
from __future__ import annotations

from typing import Any, Mapping

from magnet_jax.convert.audiocraft_xp import ExportFacts, number, shared_xp_cfg
from magnet_jax.convert.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    check_transformer,
    kind_from_xp_cfg,
    read_t5_name,
    read_xp_cfg,
)
from magnet_jax.convert.lm_params import build_checkpoint
from magnet_jax.model import MagnetConfig
from magnet_jax.model.families import BY_NAME
from magnet_jax.text.presets import WIDTHS

LM_MODEL = BY_NAME["magnet"].lm_model


def _validate(cfg: dict) -> None:
    """Refuses, by name, the features the MAGNeT releases do not use (biases, causal attention, ...)."""
    lm_model = cfg.get("lm_model")
    if lm_model != LM_MODEL:
        raise CheckpointError(f"not a MAGNeT checkpoint: xp.cfg has lm_model={lm_model!r} "
                              f"(expected {LM_MODEL!r}; 'transformer_lm' is MusicGen)")
    check_transformer(cfg, "MAGNeT", causal=False)
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
    cfg = read_xp_cfg(xp_cfg)
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
                  max_period=float(tl.get("max_period", 10000.0)),
                  positional_embedding=str(tl.get("positional_embedding", "sin")),
                  positional_scale=float(tl.get("positional_scale", 1.0)), text_dim=WIDTHS[read_t5_name(cfg)])
    except KeyError as e:
        raise CheckpointError(f"xp.cfg has no transformer_lm.{e.args[0]}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"xp.cfg: bad transformer_lm value ({e})") from None
    kw.update(overrides)
    return MagnetConfig(**kw)


def checkpoint_from_package(pkg: Mapping[str, Any], *, source: str, **kw) -> LoadedCheckpoint:
    """A read ``state_dict.bin`` package -> LoadedCheckpoint (``kw``: ``codec_source``, ``cached``, ``overrides``
    of :func:`magnet_jax.convert.lm_params.build_checkpoint`); the kind is the solver's, else the released repo's
    (``source``), else the sample rate's."""
    return build_checkpoint(pkg, config_from_xp_cfg(pkg["xp.cfg"]), kind=kind_from_xp_cfg(pkg["xp.cfg"], source),
                            lm_model=LM_MODEL, source=source, **kw)


SOLVERS = {"music": "magnet", "audio": "audio_magnet"}      # audiocraft solvers/builders.py, by kind


def xp_cfg_from_config(cfg: MagnetConfig, facts: ExportFacts) -> dict:
    """The inverse of :func:`config_from_xp_cfg`: the audiocraft ``xp.cfg`` (a dict) that audiocraft 1.3.0's
    ``load_lm_model_magnet`` builds ``cfg`` from (solver ``magnet`` / ``audio_magnet`` by ``facts.kind``)."""
    return shared_xp_cfg(cfg, facts, lm_model=LM_MODEL, solver=SOLVERS[facts.kind], causal=False,
                         codebooks_pattern={"modeling": "parallel", "parallel": {"empty_initial": -1}},
                         transformer_lm={"subcodes_context": cfg.subcodes_context, "span_len": cfg.span_len,
                                         "compression_model_framerate": cfg.frame_rate,
                                         "segment_duration": number(cfg.segment_duration)},
                         sections={"masking": {"span_len": cfg.span_len}})
