"""EnCodec checkpoint configs -> :class:`CodecConfig`: transformers ``config.json``, audiocraft
``xp.cfg``, and the encodec package's state dicts (architecture read off the tensor shapes)."""
from __future__ import annotations

import dataclasses
import math
import re

from magnet_jax.codec.config import CodecConfig, SeanetConfig
from magnet_jax.convert._common import InterpolationError, resolve_interpolations


class CodecFormatError(ValueError):
    """The file or folder is not an EnCodec checkpoint in a layout this loader understands."""


# transformers EncodecConfig defaults
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


# audiocraft SEANetEncoder/Decoder defaults (audiocraft/modules/seanet.py)
_AC_SEANET_DEFAULTS = dict(
    channels=1, dimension=128, n_filters=32, n_residual_layers=3, ratios=[8, 5, 4, 2], activation="ELU",
    activation_params={"alpha": 1.0}, norm="none", norm_params={}, kernel_size=7, last_kernel_size=7,
    residual_kernel_size=3, dilation_base=2, causal=False, pad_mode="reflect", true_skip=True, compress=2,
    lstm=0, disable_norm_outer_blocks=0)
_AC_DECODER_ONLY = dict(trim_right_ratio=1.0, final_activation=None, final_activation_params=None)


def native_config_to_codec(xp_cfg, overrides: dict | None = None) -> CodecConfig:
    """audiocraft ``xp.cfg`` (YAML string or dict) -> :class:`CodecConfig` (builders.get_compression_model)."""
    import yaml
    cfg = yaml.safe_load(xp_cfg) if isinstance(xp_cfg, str) else dict(xp_cfg)
    try:
        cfg = resolve_interpolations(cfg, cfg)
    except InterpolationError as e:
        raise CodecFormatError(str(e)) from None
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
