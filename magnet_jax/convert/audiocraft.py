"""audiocraft MAGNeT LM checkpoints -> :class:`~magnet_jax.model.MagnetLM`.

Released layout (``facebook/magnet-*`` on the hub, or a local folder): ``state_dict.bin`` =
``torch.save({'best_state': <LM state_dict>, 'xp.cfg': <YAML of the hydra config>, ...})``;
tensors may be float16. The T5 encoder is not in it (``t5-base`` / ``t5-large`` from the hub).

Reading ``.bin`` needs torch (``torch.load(weights_only=True)``); the converted float32 params are
cached as safetensors (``$MAGNET_JAX_CACHE/lm/<key>/``), so torch is needed once per checkpoint.
A folder holding ``magnet_jax_lm.safetensors`` + ``magnet_jax_config.json`` (written by
:func:`save_lm_safetensors`) loads without torch as well.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
import yaml
from flax import nnx

from magnet_jax import hub
from magnet_jax.model import MagnetConfig, MagnetLM

SAFETENSORS_NAME = "magnet_jax_lm.safetensors"
CONFIG_NAME = "magnet_jax_config.json"
TEXT_PREFIX = "condition_provider.conditioners.description.output_proj"


class CheckpointError(ValueError):
    """The file is not a (supported) audiocraft MAGNeT checkpoint."""


# ----------------------------------------------------------------------------- config
def _resolve_interpolations(cfg: dict) -> dict:
    """Resolves simple OmegaConf ``${a.b.c}`` references of a YAML-loaded config."""
    pat = re.compile(r"^\$\{([\w.]+)\}$")

    def lookup(path):
        node = cfg
        for part in path.split("."):
            node = node[part]
        return node

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            m = pat.match(node)
            if m:
                try:
                    return walk(lookup(m.group(1)))
                except (KeyError, TypeError):
                    return node
        return node
    return walk(cfg)


def config_from_xp_cfg(xp_cfg: str | Mapping[str, Any], **overrides) -> MagnetConfig:
    """MagnetConfig from an audiocraft ``xp.cfg`` (YAML string or mapping). Features the MAGNeT
    releases do not use (biases, causal attention, layer scale, ...) are refused by name."""
    cfg = yaml.safe_load(xp_cfg) if isinstance(xp_cfg, str) else dict(xp_cfg)
    if not isinstance(cfg, dict):
        raise CheckpointError("xp.cfg is not a mapping")
    cfg = _resolve_interpolations(cfg)
    lm_model = cfg.get("lm_model")
    if lm_model != "transformer_lm_magnet":
        raise CheckpointError(f"not a MAGNeT checkpoint: xp.cfg has lm_model={lm_model!r} "
                              f"(expected 'transformer_lm_magnet'; 'transformer_lm' is MusicGen)")
    tl = cfg.get("transformer_lm") or {}
    expected = {"norm": "layer_norm", "norm_first": True, "bias_ff": False, "bias_attn": False,
                "bias_proj": False, "positional_embedding": "sin", "activation": "gelu", "causal": False,
                "layer_scale": None, "qk_layer_norm": False, "qk_layer_norm_cross": False, "kv_repeat": 1,
                "xpos": False, "positional_scale": 1.0}
    for key, want in expected.items():
        if key in tl and tl[key] != want and not (isinstance(want, float) and float(tl[key]) == want):
            raise CheckpointError(f"unsupported MAGNeT variant: transformer_lm.{key}={tl[key]!r} "
                                  f"(magnet-jax implements {want!r}, as in every released model)")
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
    segment = float((cfg.get("dataset") or {}).get("segment_duration", 10.0))
    kw = dict(n_q=int(tl.get("n_q", 4)), card=int(tl.get("card", 2048)), dim=int(tl["dim"]),
              num_heads=int(tl["num_heads"]), num_layers=int(tl["num_layers"]),
              hidden_scale=int(tl.get("hidden_scale", 4)),
              subcodes_context=int(tl.get("subcodes_context", 5)),
              span_len=int((cfg.get("masking") or {}).get("span_len", tl.get("span_len", 3))),
              frame_rate=int(tl.get("compression_model_framerate", 50)), segment_duration=segment,
              max_period=float(tl.get("max_period", 10000.0)))
    t5_name = ((conds.get("description") or {}).get("t5") or {}).get("name", "t5-base")
    kw["text_dim"] = {"t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024}.get(
        str(t5_name).split("/")[-1].replace("google-t5-", ""), 768)
    kw.update(overrides)
    return MagnetConfig(**kw)


def t5_name_from_xp_cfg(xp_cfg: str | Mapping[str, Any]) -> str:
    cfg = yaml.safe_load(xp_cfg) if isinstance(xp_cfg, str) else dict(xp_cfg)
    return cfg["conditioners"]["description"]["t5"]["name"]


# ----------------------------------------------------------------------------- params
def _to_np(t) -> np.ndarray:
    if hasattr(t, "detach"):  # torch tensor
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, dtype=np.float32)


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
    D, H, L = cfg.dim, cfg.num_heads, cfg.num_layers
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


def _flatten(tree, prefix=""):
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def flat_params(lm: MagnetLM) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in _flatten(nnx.to_pure_dict(nnx.state(lm, nnx.Param)))}


def lm_from_flat_params(cfg: MagnetConfig, flat: Mapping[str, np.ndarray]) -> MagnetLM:
    """Builds a MagnetLM without random init (abstract model + the given arrays)."""
    abstract = nnx.eval_shape(lambda: MagnetLM(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    want = dict(_flatten(nnx.to_pure_dict(state)))
    missing, extra = sorted(set(want) - set(flat)), sorted(set(flat) - set(want))
    if missing or extra:
        raise CheckpointError(f"parameter names do not match the model: missing {missing[:5]}, extra {extra[:5]}")
    pure: dict = {}
    for key, abs_leaf in want.items():
        arr = np.asarray(flat[key], dtype=np.float32)
        if arr.shape != tuple(abs_leaf.shape):
            raise CheckpointError(f"{key}: shape {arr.shape} != model {tuple(abs_leaf.shape)}")
        node = pure
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = jnp.asarray(arr)
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


def lm_from_state_dict(sd: Mapping[str, Any], cfg: MagnetConfig) -> MagnetLM:
    return lm_from_flat_params(cfg, params_from_state_dict(sd, cfg))


# ----------------------------------------------------------------------------- files
def save_lm_safetensors(lm: MagnetLM, folder: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Writes ``magnet_jax_lm.safetensors`` + ``magnet_jax_config.json`` (loadable without torch)."""
    return _write_safetensors(folder, flat_params(lm), lm.config, extra)


def _write_safetensors(folder, flat: Mapping[str, np.ndarray], cfg: MagnetConfig, extra=None) -> Path:
    from safetensors.numpy import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (SAFETENSORS_NAME + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in flat.items()}, str(tmp))
    os.replace(tmp, folder / SAFETENSORS_NAME)
    meta = {"model": cfg.to_dict(), **(dict(extra) if extra else {})}
    (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=1))
    return folder


def load_lm_safetensors(folder: str | os.PathLike, **overrides) -> MagnetLM:
    from safetensors.numpy import load_file
    folder = Path(folder)
    meta = json.loads((folder / CONFIG_NAME).read_text())
    cfg = MagnetConfig.from_dict({**meta["model"], **overrides})
    return lm_from_flat_params(cfg, load_file(str(folder / SAFETENSORS_NAME)))


def read_state_dict_bin(path: str | os.PathLike) -> dict:
    """``torch.load(weights_only=True)`` of an audiocraft ``state_dict.bin``, with clear errors."""
    try:
        import torch
    except ImportError:
        raise ImportError("reading an audiocraft .bin checkpoint needs PyTorch once (the converted params are "
                          "cached afterwards): pip install 'magnet-jax[torch]' (CPU: pip install torch==2.13.0)"
                          ) from None
    try:
        pkg = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(pkg, dict) or "best_state" not in pkg or "xp.cfg" not in pkg:
        keys = sorted(pkg)[:8] if isinstance(pkg, dict) else type(pkg).__name__
        raise CheckpointError(f"{path}: not an audiocraft exported checkpoint (expected keys 'best_state' and "
                              f"'xp.cfg', found {keys})")
    return pkg


def _cache_key(source: str, file: str) -> str:
    st = os.stat(file)
    return hashlib.sha256(f"{source}|{os.path.realpath(file)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]


def load_audiocraft_lm(path_or_repo_id: str | os.PathLike, *, cache: bool = True, **overrides) -> MagnetLM:
    """Loads a MAGNeT LM from a hub repo id (``facebook/magnet-small-10secs``, ...), a local folder
    (``state_dict.bin``, or a magnet-jax safetensors export) or a ``state_dict.bin`` path.

    ``overrides`` set run-time config fields (``dtype='bfloat16'``, ``remat=True``,
    ``mask_text_padding=True``, ...). Architecture fields come from the checkpoint.
    """
    src = str(path_or_repo_id)
    local = Path(src).expanduser()
    if local.is_dir() and (local / SAFETENSORS_NAME).is_file():
        return load_lm_safetensors(local, **overrides)
    bin_path = hub.resolve_file(src, "state_dict.bin")
    cached = hub.cache_dir("lm", _cache_key(src, bin_path)) if cache else None
    if cached is not None and (cached / SAFETENSORS_NAME).is_file():
        return load_lm_safetensors(cached, **overrides)
    pkg = read_state_dict_bin(bin_path)
    cfg = config_from_xp_cfg(pkg["xp.cfg"])
    flat = params_from_state_dict(pkg["best_state"], cfg)
    if cached is not None:   # cached with the checkpoint's own config; run-time overrides are not stored
        _write_safetensors(cached, flat, cfg, extra={"source": src, "t5": t5_name_from_xp_cfg(pkg["xp.cfg"])})
    return lm_from_flat_params(cfg.replace(**overrides), flat)
