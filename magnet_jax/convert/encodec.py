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

Weight norm is fused on load (``w = g v / ||v||`` in float64, rounded to float32); torch pickles are
read without torch (:mod:`magnet_jax.convert._torch`). :func:`params_from_state_dict` is the pure
mapping (canonical state dict -> pure param dict of :class:`EncodecNet`).
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
from flax import nnx

from magnet_jax.codec.config import CodecConfig
from magnet_jax.codec.encodec import Encodec, EncodecNet
from magnet_jax.codec.frame_codec import is_frame_codec_dir, load_frame_codec
from magnet_jax.codec.seanet import LSTM, Conv1d, ConvTranspose1d, Decoder, Encoder, ResBlock
from magnet_jax.convert._torch import TorchFileError, load_torch_file
from magnet_jax.convert.encodec_config import (
    CodecFormatError,
    encodec_pkg_config,
    hf_config_to_codec,
    native_config_to_codec,
)
from magnet_jax.hub import HubError, is_local, resolve_file

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
    if is_frame_codec_dir(path_or_repo_id):   # the frame codec's own layout (magnet_jax.codec.frame_codec)
        if overrides or bandwidth is not None:
            raise CodecFormatError(f"{path_or_repo_id} is a frame codec: it takes num_codebooks only")
        try:
            return load_frame_codec(path_or_repo_id, num_codebooks=num_codebooks)
        except (ValueError, OSError) as e:
            raise CodecFormatError(f"{path_or_repo_id}: unreadable frame codec ({e})") from None
    config, sd = read_checkpoint(path_or_repo_id, overrides)
    config = _select_codebooks(config, num_codebooks, bandwidth)
    try:
        params = params_from_state_dict(sd, config)
    except (KeyError, ValueError) as e:
        raise CodecFormatError(f"{path_or_repo_id}: checkpoint does not match the architecture read from "
                               f"its config ({e})") from None
    return encodec_from_params(config, params)


def encodec_from_params(config: CodecConfig, params: dict) -> Encodec:
    """An :class:`Encodec` holding ``params`` (a pure dict shaped like :class:`EncodecNet`'s state)."""
    net = EncodecNet(config)
    state = nnx.state(net)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(net, state)
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
    """Arrays (floats as float32, integers / bools unchanged) from torch tensors or NumPy arrays."""
    out = {}
    for k, v in sd.items():
        if hasattr(v, "detach"):  # a torch tensor (a state dict handed over in memory)
            v = v.detach().cpu().float().numpy() if v.dtype.is_floating_point else v.detach().cpu().numpy()
        v = np.asarray(v)
        out[k] = v if v.dtype.kind in "biu" else v.astype(np.float32)
    return out


def _fuse_weight_norm(sd: dict) -> dict:
    """Replace (g, v) pairs by the effective weight, in either naming; everything else unchanged."""
    out = {}
    pairs: dict[str, dict] = {}
    for k, v in sd.items():
        m = re.match(r"(.*)\.(weight_g|weight_v|parametrizations\.weight\.original[01])$", k)
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


def _load_torch(path: str) -> dict:
    try:
        return load_torch_file(path)
    except TorchFileError as e:
        raise CodecFormatError(f"{path!r} is not a readable torch checkpoint ({e})") from None


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


# --------------------------------------------------------------------------- state dict -> params
def _take(sd: dict, key: str) -> np.ndarray:
    if key not in sd:
        raise KeyError(f"missing checkpoint tensor {key!r}")
    return np.asarray(sd.pop(key), np.float32)


def _conv_params(sd: dict, prefix: str, conv) -> dict:
    # torch layouts: Conv1d [Cout, Cin, K] -> ours [K, Cin, Cout]; ConvTranspose1d [Cin, Cout, K] -> [Cin, K, Cout]
    axes = (2, 1, 0) if isinstance(conv, Conv1d) else (0, 2, 1)
    out = {"weight": np.transpose(_take(sd, f"{prefix}.conv.weight"), axes), "bias": _take(sd, f"{prefix}.conv.bias")}
    if conv.has_gn:
        out["gn_scale"] = _take(sd, f"{prefix}.norm.weight")
        out["gn_bias"] = _take(sd, f"{prefix}.norm.bias")
    return out


def _lstm_params(sd: dict, prefix: str, lstm: LSTM) -> dict:
    p = f"{prefix}.lstm"
    out = {"w_ih": {}, "w_hh": {}, "b": {}}
    for i in range(lstm.num_layers):  # torch [4H, H] -> ours [H, 4H]; the two biases are summed
        out["w_ih"][i] = _take(sd, f"{p}.weight_ih_l{i}").T
        out["w_hh"][i] = _take(sd, f"{p}.weight_hh_l{i}").T
        out["b"][i] = _take(sd, f"{p}.bias_ih_l{i}") + _take(sd, f"{p}.bias_hh_l{i}")
    return out


def _layer_params(sd: dict, prefix: str, layer) -> dict | None:
    if isinstance(layer, (Conv1d, ConvTranspose1d)):
        return _conv_params(sd, prefix, layer)
    if isinstance(layer, LSTM):
        return _lstm_params(sd, prefix, layer)
    if isinstance(layer, ResBlock):  # reference block: [ELU, conv, ELU, conv]
        out = {"conv1": _conv_params(sd, f"{prefix}.block.1", layer.conv1),
               "conv2": _conv_params(sd, f"{prefix}.block.3", layer.conv2)}
        if layer.shortcut is not None:
            out["shortcut"] = _conv_params(sd, f"{prefix}.shortcut", layer.shortcut)
        return out
    return None  # ELU / final activation: no weights


def _seanet_params(sd: dict, prefix: str, side: Encoder | Decoder) -> dict:
    layers = {}
    for i, layer in enumerate(side.layers):
        p = _layer_params(sd, f"{prefix}.{i}", layer)
        if p is not None:
            layers[i] = p
    return {"layers": layers}


def _flat(tree: dict, prefix=()) -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, prefix + (k,)) if isinstance(v, dict) else {prefix + (k,): v})
    return out


def params_from_state_dict(sd: dict, config: CodecConfig) -> dict:
    """Canonical (transformers-named, weight-norm-fused, NumPy) state dict -> pure param dict of
    ``EncodecNet(config)``. Every tensor must be used and every shape must match."""
    sd = dict(sd)
    net = nnx.eval_shape(lambda: EncodecNet(config))
    out = {"encoder": _seanet_params(sd, "encoder.layers", net.encoder),
           "decoder": _seanet_params(sd, "decoder.layers", net.decoder)}
    embeds = []
    for q in range(config.total_codebooks):
        inited = sd.pop(f"quantizer.layers.{q}.codebook.inited", None)
        if inited is not None and not bool(np.all(np.asarray(inited) > 0)):
            warnings.warn(f"codebook {q} is marked un-initialised (inited=0): the checkpoint looks untrained")
        for extra in ("cluster_size", "embed_avg"):
            sd.pop(f"quantizer.layers.{q}.codebook.{extra}", None)
        embeds.append(_take(sd, f"quantizer.layers.{q}.codebook.embed"))
    out["quantizer"] = {"embed": np.stack(embeds)}
    if sd:
        raise ValueError(f"unused checkpoint tensors: {sorted(sd)[:10]}{' ...' if len(sd) > 10 else ''}")
    want = {k: tuple(v.shape) for k, v in _flat(nnx.to_pure_dict(nnx.state(net))).items()}
    got = {k: tuple(v.shape) for k, v in _flat(out).items()}
    for k in sorted(set(want) | set(got), key=str):
        if want.get(k) != got.get(k):
            name = ".".join(map(str, k))
            raise ValueError(f"{name}: checkpoint shape {got.get(k)} != model shape {want.get(k)}")
    return out
