"""The parameter layout that audiocraft's ``LMModel`` shares across families (MAGNeT, Hybrid-MAGNeT, MusicGen):
its ``state_dict`` names and shapes <-> magnet-jax's flat params (pure functions, both ways), and a read
``state_dict.bin`` of that layout -> :class:`~magnet_jax.convert.checkpoint.LoadedCheckpoint`
(:func:`build_checkpoint`, which each family's reader calls with its config and facts).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from magnet_jax.convert.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    flat_params,
    lm_from_flat_params,
    read_t5_name,
    read_xp_cfg,
    write_cache_entry,
)
from magnet_jax.model.config import LMConfig
from magnet_jax.model.layers import rotary_frequencies
from magnet_jax.model.transformer import TransformerLM
from magnet_jax.text.presets import WIDTHS

TEXT_PREFIX = "condition_provider.conditioners.description.output_proj"


def to_np(t) -> np.ndarray:
    """A float32 numpy array of a torch tensor (callers converting an in-memory torch model) or an array; float16
    / bfloat16 arrays from the file widen exactly."""
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, dtype=np.float32)


def rope_buffers(cfg: LMConfig) -> dict[str, np.ndarray]:
    """The persistent ``frequencies`` buffers of audiocraft's ``RotaryEmbedding`` (one shared by the stack, the
    same tensor under each layer's self-attention) of a ``rope`` / ``sin_rope`` model; {} for ``sin``."""
    if not cfg.rotary:
        return {}
    f = rotary_frequencies(cfg.head_dim, cfg.max_period)
    return {"transformer.rope.frequencies": f,
            **{f"transformer.layers.{i}.self_attn.rope.frequencies": f for i in range(cfg.num_layers)}}


def params_from_state_dict(sd: Mapping[str, Any], cfg: LMConfig) -> dict[str, np.ndarray]:
    """audiocraft state_dict -> flat ``{'layers.self_attn.qkv': array, ...}`` in magnet-jax layouts."""
    D, H, L, K = cfg.dim, cfg.num_heads, cfg.num_layers, cfg.n_q
    hd = D // H
    need = set(sd)

    def get(key, shape):
        if key not in sd:
            raise CheckpointError(f"state_dict has no {key!r}: not a MAGNeT LM state_dict, or config mismatch")
        need.discard(key)
        a = to_np(sd[key])
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
    for key, want in rope_buffers(cfg).items():       # not parameters: computed from the config, checked
        if not np.allclose(get(key, want.shape), want, rtol=1e-6, atol=0):
            raise CheckpointError(f"{key} differs from the rotary frequencies of max_period={cfg.max_period:g}")
    if need:
        raise CheckpointError(f"state_dict has {len(need)} unexpected tensors, e.g. {sorted(need)[:5]}")
    return out


def to_audiocraft_state_dict(lm: TransformerLM) -> dict[str, np.ndarray]:
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
    sd.update(rope_buffers(cfg))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def lm_from_state_dict(sd: Mapping[str, Any], cfg: LMConfig) -> TransformerLM:
    """The LM of ``cfg``'s family holding an audiocraft state_dict (numpy arrays or torch tensors)."""
    return lm_from_flat_params(cfg, params_from_state_dict(sd, cfg))


def check_text_width(sd: Mapping[str, Any], t5_name: str) -> None:
    """The T5 width the LM was trained on is the output projection's input size: it must be the named T5's."""
    w = sd.get(f"{TEXT_PREFIX}.weight")
    if w is None:
        raise CheckpointError(f"state_dict has no {TEXT_PREFIX}.weight: not a MAGNeT LM with a T5 description")
    if np.shape(w)[-1] != WIDTHS[t5_name]:
        raise CheckpointError(f"the checkpoint's text projection takes {np.shape(w)[-1]}-dim T5 states, but its "
                              f"xp.cfg names {t5_name} ({WIDTHS[t5_name]}-dim): inconsistent checkpoint")


def build_checkpoint(pkg: Mapping[str, Any], cfg: LMConfig, *, kind: str, lm_model: str, source: str,
                     codec_source: str, cached: Path | None, overrides: Mapping[str, Any],
                     params_fn: Callable[[Mapping[str, Any], LMConfig], dict] = params_from_state_dict,
                     channels: int = 1) -> LoadedCheckpoint:
    """A read ``state_dict.bin`` package and its family's parsed config (with its ``kind``, ``lm_model``, key
    mapping ``params_fn`` and ``channels``) -> LoadedCheckpoint: checks the T5 width, maps the keys, writes the
    safetensors cache entry (if ``cached``) and builds the LM with the run-time ``overrides``."""
    t5_name = read_t5_name(read_xp_cfg(pkg["xp.cfg"]))
    check_text_width(pkg["best_state"], t5_name)
    flat = params_fn(pkg["best_state"], cfg)
    if cached is not None:
        write_cache_entry(cached, flat, cfg, source=source, t5_name=t5_name, kind=kind, lm_model=lm_model,
                          channels=channels)
    lm = lm_from_flat_params(cfg.replace(**overrides), flat)
    return LoadedCheckpoint(lm, t5_name, kind, cfg.segment_duration, source, codec_source, lm_model, channels)
