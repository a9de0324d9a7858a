"""Writing an audiocraft ``xp.cfg``: the sections every LM family shares (the inverse of
:mod:`magnet_jax.convert.checkpoint`'s readers).

Each family's writer (``xp_cfg_from_config`` in :mod:`~magnet_jax.convert.magnet`,
:mod:`~magnet_jax.convert.musicgen`, :mod:`~magnet_jax.convert.hybrid`) calls :func:`shared_xp_cfg` with its
``lm_model``, solver, causality and codebook pattern. The result has the keys and values of the released
checkpoints' ``xp.cfg`` (what audiocraft 1.3.0's ``builders.get_lm_model`` and ``loaders.load_lm_model`` /
``load_lm_model_magnet`` read, plus the training facts they drop), and reads back through the family's
``config_from_xp_cfg`` to the same config. :class:`ExportFacts` is what the weights do not say: the T5, music or
audio, the codec's sample rate and channels, where the codec is, and (optionally) the training recipe.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from magnet_jax.convert.checkpoint import RELEASED_TRANSFORMER, CheckpointError
from magnet_jax.model.config import LMConfig
from magnet_jax.text.presets import T5_MODELS, WIDTHS, canonical_t5_name

AUDIOCRAFT_VERSION = "1.3.0"         # the ``version`` of the exported package (the audiocraft we match)
PRETRAINED_PREFIX = "//pretrained/"  # audiocraft's reference to a released model in ``compression_model_checkpoint``
# the training recipe fields of a released xp.cfg (audiocraft's loaders drop them; magnet_32khz.yaml's values)
RECIPE = {"word_dropout": 0.3, "cfg_dropout": 0.3, "cfg_coef": 3.0, "merge_text_p": 0.25, "drop_desc_p": 0.5,
          "batch_size": 192, "min_segment_ratio": 0.8}


@dataclasses.dataclass(frozen=True)
class ExportFacts:
    """What an exported ``xp.cfg`` records besides the architecture."""
    t5_name: str                       # audiocraft's T5 name (``t5-base``); must be one T5Conditioner accepts
    kind: str = "music"                # "music" | "audio": the solver written (magnet / audio_magnet, ...)
    sample_rate: int = 32000           # the codec's
    channels: int = 1                  # 2: stereo MusicGen (codebooks interleaved)
    compression: str = PRETRAINED_PREFIX + "facebook/encodec_32khz"   # compression_model_checkpoint
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)   # RECIPE overrides


def _plain(x):
    """YAML-safe data (tuples -> lists, numpy scalars -> Python numbers)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        return x.item()
    return x


def number(v: float):
    """An integral float as an int (audiocraft builds its MAGNeT masks from ``segment_duration * framerate``)."""
    return int(v) if float(v).is_integer() else float(v)


def check_t5(cfg: LMConfig, t5_name: str | None) -> str:
    """The audiocraft T5 name of ``t5_name``, checked against the LM's text width; refused by name otherwise."""
    name = canonical_t5_name(str(t5_name)) if t5_name else None
    if name is None:
        raise CheckpointError(f"the LM was trained with the text encoder {t5_name!r}, which audiocraft's "
                              f"T5Conditioner cannot load (it accepts {', '.join(sorted(T5_MODELS))}): export it "
                              f"with --format=magnet_jax")
    if WIDTHS[name] != cfg.text_dim:
        raise CheckpointError(f"{name} has {WIDTHS[name]}-dim states but the LM's text projection takes "
                              f"{cfg.text_dim}: name the T5 the LM was trained with")
    return name


def shared_xp_cfg(cfg: LMConfig, facts: ExportFacts, *, lm_model: str, solver: str, causal: bool,
                  codebooks_pattern: Mapping[str, Any], transformer_lm: Mapping[str, Any] | None = None,
                  sections: Mapping[str, Any] | None = None, backend: str = "xformers") -> dict:
    """The ``xp.cfg`` of ``cfg`` (a plain dict, YAML-safe) with the family's fields given; ``transformer_lm``:
    the family's extra ``transformer_lm`` keys (MAGNeT's ``subcodes_context``, ...), ``sections``: its extra
    top-level sections (MAGNeT's ``masking``, stereo MusicGen's ``interleave_stereo_codebooks``)."""
    sections = dict(sections or {})
    if facts.kind not in ("music", "audio"):
        raise ValueError(f"kind={facts.kind!r}: 'music' or 'audio'")
    if facts.channels != 1 and not (facts.channels == 2 and "interleave_stereo_codebooks" in sections):
        raise CheckpointError(f"audiocraft has no {facts.channels}-channel {lm_model} model (stereo: MusicGen only)")
    if float(cfg.layer_norm_eps) != 1e-5:
        raise CheckpointError(f"layer_norm_eps={cfg.layer_norm_eps}: audiocraft's LayerNorms use 1e-5")
    t5_name = check_t5(cfg, facts.t5_name)
    r = {**RECIPE, **{k: v for k, v in dict(facts.training).items() if v is not None}}
    unknown = sorted(set(r) - set(RECIPE))
    if unknown:
        raise TypeError(f"unknown training facts {unknown}; known: {sorted(RECIPE)}")
    tl = {
        "dim": cfg.dim, "num_heads": cfg.num_heads, "num_layers": cfg.num_layers, "hidden_scale": cfg.hidden_scale,
        "n_q": cfg.n_q, "card": cfg.card, "dropout": 0.0, "emb_lr": None, "activation": "gelu", "norm_first": True,
        "bias_ff": False, "bias_attn": False, "bias_proj": False, "past_context": None, "causal": causal,
        "custom": False, "memory_efficient": True, "attention_as_float32": False, "layer_scale": None,
        "positional_embedding": cfg.positional_embedding,
        "positional_scale": number(cfg.positional_scale), "max_period": number(cfg.max_period),
        "xpos": False, "checkpointing": "none", "weight_init": "gaussian", "depthwise_init": "current",
        "zero_bias_init": True, "norm": "layer_norm", "cross_attention": False, "qk_layer_norm": False,
        "qk_layer_norm_cross": False, "attention_dropout": None, "kv_repeat": 1, "two_step_cfg": False,
        **dict(transformer_lm or {})}
    for k, v in RELEASED_TRANSFORMER.items():      # what the readers check: written as they expect
        assert tl[k] == v, (k, tl[k], v)
    xp = {
        "device": "cpu", "dtype": "float32", "sample_rate": int(facts.sample_rate), "channels": int(facts.channels),
        "compression_model_checkpoint": facts.compression, "lm_model": lm_model, "solver": solver,
        "efficient_attention_backend": backend,
        "dataset": {"segment_duration": number(cfg.segment_duration), "batch_size": int(r["batch_size"]),
                    "min_segment_ratio": float(r["min_segment_ratio"])},
        "codebooks_pattern": dict(codebooks_pattern),
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": float(r["cfg_dropout"]),
                                     "inference_coef": float(r["cfg_coef"])},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
                  "cross": ["description"], "input_interpolate": []},
        "conditioners": {
            "args": {"merge_text_conditions_p": float(r["merge_text_p"]), "drop_desc_p": float(r["drop_desc_p"])},
            "description": {"model": "t5", "t5": {"name": t5_name, "finetune": False,
                                                  "word_dropout": float(r["word_dropout"]),
                                                  "normalize_text": False}}},
        "transformer_lm": tl,
        **sections,
    }
    return _plain(xp)
