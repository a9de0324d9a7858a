"""Loading EnCodec checkpoints from the three layouts in the wild into :class:`Encodec`.

Supported (detected automatically):

1. **transformers** (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``; e.g.
   ``facebook/encodec_32khz``, ``facebook/encodec_24khz``, ``facebook/encodec_48khz``), with either
   weight-norm layout: ``*.conv.weight_g`` / ``*.conv.weight_v`` (hub files) or
   ``*.conv.parametrizations.weight.original0`` / ``original1`` (transformers 5.x state dicts).
2. **audiocraft-native** compression checkpoints: a ``compression_state_dict.bin`` (or any torch
   file) holding ``{'xp.cfg': <yaml>, 'best_state': <state dict>}``, e.g. audio-MAGNeT's 16 kHz
   tokenizer; ``{'pretrained': '<hf repo>'}`` redirects (what the music MAGNeT repos ship).
3. the **encodec package**'s state dicts (``encodec_24khz-d7cc33bc.th``,
   ``encodec_48khz-7e698e3e.th``): the architecture is read off the tensor shapes; what shapes
   cannot tell (sample rate, causality, normalisation, segments) comes from the package's two
   constructors, recognised by channels + norm (mono + weight norm = 24 kHz causal; stereo + time
   group norm = 48 kHz non-causal, normalised, 1 s segments), or from keyword overrides.

Weight norm is fused on load (``w = g v / ||v||`` in float64, rounded to float32).
Torch is only imported to read ``.bin`` / ``.th`` pickles (``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ..hub import HubError, is_local, resolve_file
from .config import CodecConfig, SeanetConfig
from .encodec import Encodec, EncodecNet


class CodecFormatError(ValueError):
    """The file or folder is not an EnCodec checkpoint in a layout this loader understands."""


_TORCH_SUFFIXES = (".bin", ".th", ".pt", ".pth", ".ckpt")


# --------------------------------------------------------------------------- entry point
def load_encodec(path_or_repo_id: str | os.PathLike, *, num_codebooks: int | None = None,
                 bandwidth: float | None = None, **overrides) -> Encodec:
    """Load an EnCodec model from a hub repo id, a local folder, or a local checkpoint file.

    ``num_codebooks`` (or ``bandwidth`` in kbps, as in the references) selects how many RVQ levels
    :meth:`Encodec.encode` uses; the default is all of the checkpoint's codebooks (what audiocraft
    / MAGNeT use; note transformers' ``encode`` defaults to the *smallest* target bandwidth).
    ``overrides`` replace top-level :class:`CodecConfig` fields (``sample_rate``, ``renormalize``,
    ``segment``, ``overlap``) or SEANet fields applied to both sides (``causal``, ``pad_mode``, ...),
    mostly useful for encodec-package state dicts of unusual shape.

    Raises :class:`magnet_jax.hub.HubError` when files cannot be found or downloaded (offline),
    :class:`CodecFormatError` when the checkpoint layout is not recognised.
    """
    config, sd = read_checkpoint(path_or_repo_id, overrides)
    config = _select_codebooks(config, num_codebooks, bandwidth)
    net = EncodecNet(config)
    try:
        net.load_state_dict(sd)
    except (KeyError, ValueError) as e:
        raise CodecFormatError(f"{path_or_repo_id}: checkpoint does not match the architecture read from "
                               f"its config ({e})") from None
    return Encodec(config, net)


def read_checkpoint(path_or_repo_id, overrides: dict | None = None) -> tuple[CodecConfig, dict]:
    """(config, canonical numpy state dict) for any supported layout."""
    overrides = dict(overrides or {})
    src = str(path_or_repo_id)
    p = Path(src).expanduser()
    if is_local(src):
        if p.is_dir():
            if (p / "config.json").is_file() and _is_encodec_config(str(p / "config.json")):
                return _read_hf(str(p), overrides)
            if (p / "compression_state_dict.bin").is_file():
                return _read_torch_file(str(p / "compression_state_dict.bin"), overrides)
            cands = sorted(x for x in p.iterdir() if x.suffix in _TORCH_SUFFIXES)
            if len(cands) == 1:
                return _read_torch_file(str(cands[0]), overrides)
            raise CodecFormatError(
                f"{src!r}: no EnCodec checkpoint found (looked for config.json [transformers], "
                f"compression_state_dict.bin [audiocraft], or a single torch state-dict file [encodec "
                f"package]; the folder has {sorted(x.name for x in p.iterdir())[:20]})")
        if p.name == "config.json" or p.suffix == ".safetensors":
            return _read_hf(str(p.parent), overrides)
        if p.suffix in _TORCH_SUFFIXES:
            return _read_torch_file(str(p), overrides)
        raise CodecFormatError(f"{src!r}: unknown checkpoint file type {p.suffix!r} (expected a folder, "
                               f"config.json, *.safetensors or a torch file {_TORCH_SUFFIXES})")
    # hub repo id: a transformers repo, or an audiocraft (MAGNeT / AudioGen) repo
    cfg_file = resolve_file(src, "config.json", optional=True)
    if cfg_file is not None and _is_encodec_config(cfg_file):
        return _read_hf(src, overrides)
    f = resolve_file(src, "compression_state_dict.bin", optional=True)
    if f is not None:
        return _read_torch_file(f, overrides)
    raise CodecFormatError(f"hub repo {src!r} has neither an EnCodec config.json (transformers) nor "
                           f"compression_state_dict.bin (audiocraft)")


def _is_encodec_config(path: str) -> bool:
    """A transformers EnCodec config.json (audiocraft repos may carry other config.json files)."""
    try:
        with open(path) as fh:
            return json.load(fh).get("model_type", "encodec") == "encodec"
    except (OSError, ValueError, AttributeError):
        return False


def _select_codebooks(cfg: CodecConfig, num_codebooks, bandwidth) -> CodecConfig:
    if num_codebooks is not None and bandwidth is not None:
        raise ValueError("give num_codebooks or bandwidth, not both")
    if bandwidth is not None:
        bw_per_q = math.log2(cfg.bins) * math.ceil(cfg.frame_rate)
        num_codebooks = int(max(1, math.floor(bandwidth * 1000 / bw_per_q)))
        num_codebooks = min(num_codebooks, cfg.total_codebooks)
    if num_codebooks is None:
        return cfg
    return cfg.replace(num_codebooks=int(num_codebooks))


# --------------------------------------------------------------------------- tensors
def _to_numpy(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        if hasattr(v, "detach"):  # torch tensor
            v = v.detach().cpu()
            if v.dtype.is_floating_point:
                v = v.float()
            v = v.numpy()
        out[k] = np.asarray(v)
    return out


def _fuse_weight_norm(sd: dict) -> dict:
    """Replace (g, v) pairs by the effective weight, in either naming; everything else unchanged."""
    out = {}
    pairs: dict[str, dict] = {}
    for k, v in sd.items():
        m = re.match(r"(.*)\.(weight_g|weight_v|parametrizations\.weight\.original0|parametrizations\.weight\.original1)$", k)
        if m:
            role = "g" if m.group(2) in ("weight_g", "parametrizations.weight.original0") else "v"
            pairs.setdefault(m.group(1), {})[role] = v
        else:
            out[k] = v
    for base, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            raise CodecFormatError(f"weight-norm parameters of {base!r} are incomplete ({sorted(gv)})")
        g, v = np.asarray(gv["g"], np.float64), np.asarray(gv["v"], np.float64)
        norm = np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
        out[f"{base}.weight"] = (v * (g / norm)).astype(np.float32)
    return out


def _load_torch(path: str):
    try:
        import torch
    except ImportError as e:
        raise CodecFormatError(f"reading {path!r} needs PyTorch (pip install torch): it is a torch pickle") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CodecFormatError(f"{path!r} is not a readable torch checkpoint ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------- transformers
_HF_DEFAULTS = dict(
    target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0], sampling_rate=24000, audio_channels=1, normalize=False,
    chunk_length_s=None, overlap=None, hidden_size=128, num_filters=32, num_residual_layers=1,
    upsampling_ratios=[8, 5, 4, 2], norm_type="weight_norm", kernel_size=7, last_kernel_size=7,
    residual_kernel_size=3, dilation_growth_rate=2, use_causal_conv=True, pad_mode="reflect", compress=2,
    num_lstm_layers=2, trim_right_ratio=1.0, codebook_size=1024, codebook_dim=None, use_conv_shortcut=True)


def hf_config_to_codec(hf: dict, overrides: dict | None = None) -> CodecConfig:
    """transformers ``EncodecConfig`` (as a dict, i.e. ``config.json``) -> :class:`CodecConfig`."""
    c = {**_HF_DEFAULTS, **{k: v for k, v in hf.items() if k in _HF_DEFAULTS}}
    if c["codebook_dim"] not in (None, c["hidden_size"]):
        raise CodecFormatError(f"codebook_dim {c['codebook_dim']} != hidden_size {c['hidden_size']} "
                               f"is not supported (the reference has no projection either)")
    side = SeanetConfig(
        channels=c["audio_channels"], dimension=c["hidden_size"], n_filters=c["num_filters"],
        n_residual_layers=c["num_residual_layers"], ratios=tuple(c["upsampling_ratios"]),
        kernel_size=c["kernel_size"], last_kernel_size=c["last_kernel_size"],
        residual_kernel_size=c["residual_kernel_size"], dilation_base=c["dilation_growth_rate"],
        causal=c["use_causal_conv"], pad_mode=c["pad_mode"], norm=c["norm_type"],
        true_skip=not c["use_conv_shortcut"], compress=c["compress"], lstm=c["num_lstm_layers"],
        trim_right_ratio=c["trim_right_ratio"])
    hop = side.hop_length
    frame_rate = math.ceil(c["sampling_rate"] / hop)
    nbits = math.ceil(math.log2(c["codebook_size"]))
    total = int(1000 * c["target_bandwidths"][-1] // (frame_rate * nbits))
    segment = c["chunk_length_s"]
    top = dict(sample_rate=int(c["sampling_rate"]), encoder=side, decoder=side, total_codebooks=total,
               num_codebooks=total, bins=int(c["codebook_size"]), renormalize=bool(c["normalize"]),
               segment=None if segment is None else float(segment),
               overlap=0.0 if c["overlap"] is None else float(c["overlap"]),
               name=hf.get("_name_or_path") or "encodec_hf")
    return _apply_overrides(top, overrides)


def _read_hf(src: str, overrides: dict):
    with open(resolve_file(src, "config.json")) as fh:
        hf = json.load(fh)
    if hf.get("model_type", "encodec") != "encodec":
        raise CodecFormatError(f"{src}: config.json is for model_type={hf.get('model_type')!r}, not 'encodec'")
    cfg = hf_config_to_codec(hf, overrides)
    st = resolve_file(src, "model.safetensors", optional=True)
    if st is not None:
        from safetensors.numpy import load_file
        sd = load_file(st)
    else:
        binf = resolve_file(src, "pytorch_model.bin", optional=True)
        if binf is None:
            raise HubError(f"{src}: neither model.safetensors nor pytorch_model.bin found next to config.json")
        sd = _to_numpy(_load_torch(binf))
    sd = {k[len("encodec."):] if k.startswith("encodec.") else k: v for k, v in sd.items()}
    return cfg, _fuse_weight_norm(sd)


# --------------------------------------------------------------------------- torch files
def _read_torch_file(path: str, overrides: dict):
    obj = _load_torch(path)
    if not isinstance(obj, dict):
        raise CodecFormatError(f"{path!r}: expected a dict, got {type(obj).__name__}")
    if "pretrained" in obj:  # audiocraft export of a HF-hosted codec
        return read_checkpoint(obj["pretrained"], overrides)
    if "xp.cfg" in obj and "best_state" in obj:
        state = obj["best_state"]
        if isinstance(state, dict) and "model" in state and not any(k.startswith("encoder.") for k in state):
            state = state["model"]
        cfg = native_config_to_codec(obj["xp.cfg"], overrides)
        return cfg, _canonical_native(_to_numpy(state))
    if any(k.startswith("encoder.model.") for k in obj):
        sd = _canonical_native(_to_numpy(obj))
        return encodec_pkg_config(sd, overrides, name=Path(path).name), sd
    if any(k.startswith("encoder.layers.") for k in obj):
        raise CodecFormatError(f"{path!r} is a transformers EnCodec state dict: put it in a folder with its "
                               f"config.json (as model.safetensors / pytorch_model.bin)")
    raise CodecFormatError(f"{path!r}: not an EnCodec checkpoint (keys: {sorted(obj)[:8]})")


def _canonical_native(sd: dict) -> dict:
    """audiocraft / encodec-package names -> transformers names, weight norm fused."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^(encoder|decoder)\.model\.", r"\1.layers.", k)
        k = k.replace(".conv.conv.", ".conv.").replace(".convtr.convtr.", ".conv.")
        k = k.replace(".conv.norm.", ".norm.").replace(".convtr.norm.", ".norm.")
        k = k.replace("quantizer.vq.layers.", "quantizer.layers.").replace("._codebook.", ".codebook.")
        out[k] = v
    return _fuse_weight_norm(out)


# audiocraft SEANetEncoder/Decoder defaults (audiocraft/modules/seanet.py)
_AC_SEANET_DEFAULTS = dict(
    channels=1, dimension=128, n_filters=32, n_residual_layers=3, ratios=[8, 5, 4, 2], activation="ELU",
    activation_params={"alpha": 1.0}, norm="none", norm_params={}, kernel_size=7, last_kernel_size=7,
    residual_kernel_size=3, dilation_base=2, causal=False, pad_mode="reflect", true_skip=True, compress=2,
    lstm=0, disable_norm_outer_blocks=0)
_AC_DECODER_ONLY = dict(trim_right_ratio=1.0, final_activation=None, final_activation_params=None)


def _resolve_interpolations(node, root):
    """Resolve OmegaConf ``${a.b}`` references of an exported ``xp.cfg`` (plain-YAML subset)."""
    if isinstance(node, dict):
        return {k: _resolve_interpolations(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_interpolations(v, root) for v in node]
    if isinstance(node, str):
        m = re.fullmatch(r"\$\{([\w.]+)\}", node.strip())
        if m:
            cur = root
            for part in m.group(1).split("."):
                if not isinstance(cur, dict) or part not in cur:
                    raise CodecFormatError(f"xp.cfg: cannot resolve {node!r}")
                cur = cur[part]
            return _resolve_interpolations(cur, root)
    return node


def native_config_to_codec(xp_cfg, overrides: dict | None = None) -> CodecConfig:
    """audiocraft ``xp.cfg`` (YAML string or dict) -> :class:`CodecConfig` (builders.get_compression_model)."""
    import yaml
    cfg = yaml.safe_load(xp_cfg) if isinstance(xp_cfg, str) else dict(xp_cfg)
    cfg = _resolve_interpolations(cfg, cfg)
    if cfg.get("compression_model", "encodec") != "encodec":
        raise CodecFormatError(f"xp.cfg: compression_model={cfg.get('compression_model')!r} is not 'encodec'")
    enc = dict(cfg.get("encodec") or {})
    if enc.get("autoencoder", "seanet") != "seanet" or enc.get("quantizer", "rvq") != "rvq":
        raise CodecFormatError(f"xp.cfg: only seanet + rvq EnCodec models are supported "
                               f"(got {enc.get('autoencoder')} + {enc.get('quantizer')})")
    seanet = dict(cfg.get("seanet") or {})
    enc_over, dec_over = seanet.pop("encoder", None) or {}, seanet.pop("decoder", None) or {}

    def side(kw, decoder):
        kw = {**_AC_SEANET_DEFAULTS, **(_AC_DECODER_ONLY if decoder else {}), **kw}
        if kw["activation"] != "ELU":
            raise CodecFormatError(f"xp.cfg: activation {kw['activation']!r} is not supported (ELU only)")
        if kw.get("final_activation_params"):
            raise CodecFormatError("xp.cfg: final_activation_params are not supported")
        return SeanetConfig(
            channels=kw["channels"], dimension=kw["dimension"], n_filters=kw["n_filters"],
            n_residual_layers=kw["n_residual_layers"], ratios=tuple(kw["ratios"]), kernel_size=kw["kernel_size"],
            last_kernel_size=kw["last_kernel_size"], residual_kernel_size=kw["residual_kernel_size"],
            dilation_base=kw["dilation_base"], causal=kw["causal"], pad_mode=kw["pad_mode"], norm=kw["norm"],
            true_skip=kw["true_skip"], compress=kw["compress"], lstm=kw["lstm"],
            disable_norm_outer_blocks=kw["disable_norm_outer_blocks"],
            trim_right_ratio=kw.get("trim_right_ratio", 1.0) if decoder else 1.0,
            final_activation=kw.get("final_activation") if decoder else None,
            activation_alpha=float((kw.get("activation_params") or {}).get("alpha", 1.0)))

    rvq = dict(cfg.get("rvq") or {})
    n_q, bins = int(rvq.get("n_q", 8)), int(rvq.get("bins", 1024))
    top = dict(sample_rate=int(enc.get("sample_rate", cfg.get("sample_rate"))),
               encoder=side({**seanet, **enc_over}, False), decoder=side({**seanet, **dec_over}, True),
               total_codebooks=n_q, num_codebooks=n_q, bins=bins,
               renormalize=bool(enc.get("renormalize", enc.get("renorm", False))), segment=None,
               name="encodec_audiocraft")
    return _apply_overrides(top, overrides)


# --------------------------------------------------------------------------- encodec package
_PKG_PRESETS = {
    # (channels, norm) -> what EncodecModel.encodec_model_{24,48}khz pass to the constructors
    (1, "weight_norm"): dict(sample_rate=24000, causal=True, renormalize=False, segment=None, overlap=0.01,
                             name="encodec_24khz"),
    (2, "time_group_norm"): dict(sample_rate=48000, causal=False, renormalize=True, segment=1.0, overlap=0.01,
                                 name="encodec_48khz"),
}


def _layer_indices(sd, prefix):
    idx = {int(m.group(1)) for k in sd if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
    return sorted(idx)


def encodec_pkg_config(sd: dict, overrides: dict | None = None, name: str = "") -> CodecConfig:
    """Architecture of an ``encodec``-package state dict (canonical names), from tensor shapes."""
    overrides = dict(overrides or {})
    try:
        w0 = sd["encoder.layers.0.conv.weight"]
        channels, n_filters, kernel = int(w0.shape[1]), int(w0.shape[0]), int(w0.shape[2])
        enc_idx = _layer_indices(sd, "encoder.layers")
        ratios, n_res, res_kernel, compress, true_skip, lstm = [], None, 3, 2, True, 0
        count = 0
        for i in enc_idx[1:]:
            p = f"encoder.layers.{i}"
            if f"{p}.block.1.conv.weight" in sd:
                count += 1
                wb = sd[f"{p}.block.1.conv.weight"]
                res_kernel, compress = int(wb.shape[2]), int(wb.shape[1]) // int(wb.shape[0])
                true_skip = f"{p}.shortcut.conv.weight" not in sd
            elif f"{p}.lstm.weight_ih_l0" in sd:
                lstm = len([k for k in sd if k.startswith(f"{p}.lstm.weight_ih_l")])
            elif f"{p}.conv.weight" in sd and i != enc_idx[-1]:
                k = int(sd[f"{p}.conv.weight"].shape[2])
                ratios.append(k // 2)
                n_res = count if n_res is None else n_res
                count = 0
        last_kernel = int(sd[f"encoder.layers.{enc_idx[-1]}.conv.weight"].shape[2])
        dimension = int(sd[f"encoder.layers.{enc_idx[-1]}.conv.weight"].shape[0])
        norm = ("time_group_norm" if "encoder.layers.0.norm.weight" in sd else "weight_norm")
        q_idx = _layer_indices(sd, "quantizer.layers")
        bins = int(sd["quantizer.layers.0.codebook.embed"].shape[0])
    except KeyError as e:
        raise CodecFormatError(f"{name}: not an encodec-package state dict (missing {e})") from None
    preset = dict(_PKG_PRESETS.get((channels, norm), {}))
    for k in ("sample_rate", "causal", "renormalize", "segment", "overlap"):
        if k in overrides:
            preset[k] = overrides.pop(k)
    if "sample_rate" not in preset or "causal" not in preset:
        raise CodecFormatError(
            f"{name}: an encodec-package state dict with {channels} channel(s) and {norm} is neither the "
            f"24 kHz nor the 48 kHz model; pass sample_rate=... and causal=... to load_encodec")
    side = SeanetConfig(channels=channels, dimension=dimension, n_filters=n_filters, n_residual_layers=n_res or 0,
                        ratios=tuple(reversed(ratios)), kernel_size=kernel, last_kernel_size=last_kernel,
                        residual_kernel_size=res_kernel, dilation_base=2, causal=preset["causal"],
                        pad_mode="reflect", norm=norm, true_skip=true_skip, compress=compress, lstm=lstm)
    top = dict(sample_rate=int(preset["sample_rate"]), encoder=side, decoder=side, total_codebooks=len(q_idx),
               num_codebooks=len(q_idx), bins=bins, renormalize=bool(preset.get("renormalize", False)),
               segment=preset.get("segment"), overlap=float(preset.get("overlap", 0.01)),
               name=preset.get("name", name or "encodec_pkg"))
    return _apply_overrides(top, overrides)


# --------------------------------------------------------------------------- overrides
_TOP_FIELDS = {"sample_rate", "total_codebooks", "num_codebooks", "bins", "renormalize", "segment", "overlap", "name"}


def _apply_overrides(top: dict, overrides: dict | None) -> CodecConfig:
    import dataclasses
    overrides = dict(overrides or {})
    side_fields = {f.name for f in dataclasses.fields(SeanetConfig)}
    side_kw = {k: overrides.pop(k) for k in list(overrides) if k in side_fields}
    top_kw = {k: overrides.pop(k) for k in list(overrides) if k in _TOP_FIELDS}
    if overrides:
        raise TypeError(f"unknown load_encodec options: {sorted(overrides)}")
    if side_kw:
        top["encoder"] = dataclasses.replace(top["encoder"], **side_kw)
        top["decoder"] = dataclasses.replace(top["decoder"], **side_kw)
    top.update(top_kw)
    return CodecConfig(**top)
