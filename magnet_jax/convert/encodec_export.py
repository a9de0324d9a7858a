"""Export a codec (trained here or loaded) to the layouts other tools read.

* ``transformers``: a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``, weight norm
  as ``*.conv.parametrizations.weight.original0`` (g) / ``original1`` (v)) for
  ``transformers.EncodecModel.from_pretrained``.
* ``audiocraft``: ``compression_state_dict.bin`` as audiocraft's ``export_encodec`` writes it
  (``{'xp.cfg': <yaml>, 'best_state': <state dict>, 'version', 'exported'}``, weight norm as
  ``weight_g`` / ``weight_v``) for ``audiocraft.models.loaders.load_compression_model``. It is written
  without torch (:func:`magnet_jax.convert._torch_write.save_torch_file`, torch's zip format).
* ``magnet_jax``: the frame codec's own folder (``config.json`` with ``model_type:
  magnet_jax_frame_codec`` + ``model.safetensors``), the only layout a :class:`FrameCodec` has.
* ``auto``: ``magnet_jax`` for a frame codec, ``transformers`` for an EnCodec.

Weights are the inference (fused) ones: each weight-normed conv is written as ``g = ||w||``, ``v = w``,
which reloads to ``w`` (up to float rounding). The EMA buffers (``cluster_size``, ``embed_avg``) come
from the training state when given, else neutral values (ones, the codebook).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from flax import nnx

from magnet_jax.codec.config import CodecConfig
from magnet_jax.codec.encodec import Encodec
from magnet_jax.codec.frame_codec import FrameCodec, save_frame_codec
from magnet_jax.codec.rvq_train import RVQTrainConfig
from magnet_jax.codec.seanet import LSTM, Conv1d, ConvTranspose1d, ResBlock
from magnet_jax.codec.training_model import TrainableEncodec, export_inference_codec
from magnet_jax.convert._torch_write import save_torch_file

FORMATS = ("transformers", "audiocraft", "magnet_jax", "auto")


def _walk(net, tnet, side: str):
    """(index path, inference layer, trainable twin) of every conv / LSTM of one SEANet side."""
    for i, (layer, twin) in enumerate(zip(getattr(net, side).layers, getattr(tnet, side).layers)):
        if isinstance(layer, ResBlock):
            yield (i, "block.1"), layer.conv1, twin.conv1
            yield (i, "block.3"), layer.conv2, twin.conv2
            if layer.shortcut is not None:
                yield (i, "shortcut"), layer.shortcut, twin.shortcut
        elif isinstance(layer, (Conv1d, ConvTranspose1d, LSTM)):
            yield (i,), layer, twin


def _torch_weight(conv) -> np.ndarray:
    w = np.asarray(conv.weight[...], np.float32)
    return np.transpose(w, (2, 1, 0) if isinstance(conv, Conv1d) else (0, 2, 1))


def _weight_norm(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g, v) with ``g * v / ||v|| == w`` (torch ``weight_norm(dim=0)``: norm over all dims but 0)."""
    w64 = w.astype(np.float64)
    g = np.sqrt(np.sum(w64 * w64, axis=(1, 2), keepdims=True))
    return g.astype(np.float32), w.copy()


def state_dict(codec: Encodec, fmt: str, buffers: dict | None = None) -> dict:
    """NumPy state dict of ``codec`` in the ``transformers`` or ``audiocraft`` naming."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {FORMATS}")
    cfg = codec.config
    tnet = nnx.eval_shape(lambda: TrainableEncodec(cfg, RVQTrainConfig()))
    hf = fmt == "transformers"
    out = {}
    for side in ("encoder", "decoder"):
        for path, layer, twin in _walk(codec.net, tnet, side):
            base = f"{side}.{'layers' if hf else 'model'}." + ".".join(map(str, path))
            if isinstance(layer, LSTM):
                for n in range(layer.num_layers):
                    b = np.asarray(layer.b[n][...], np.float32)
                    out[f"{base}.lstm.weight_ih_l{n}"] = np.asarray(layer.w_ih[n][...], np.float32).T.copy()
                    out[f"{base}.lstm.weight_hh_l{n}"] = np.asarray(layer.w_hh[n][...], np.float32).T.copy()
                    out[f"{base}.lstm.bias_ih_l{n}"] = b
                    out[f"{base}.lstm.bias_hh_l{n}"] = np.zeros_like(b)  # only the sum matters
                continue
            w = _torch_weight(layer)
            kind = "conv" if isinstance(layer, Conv1d) else "convtr"
            inner = f"{base}.conv" if hf else f"{base}.{kind}.{kind}"
            norm = f"{base}.norm" if hf else f"{base}.{kind}.norm"
            # transformers weight-norms every conv of a weight_norm model; audiocraft skips the
            # disable_norm_outer_blocks (the trainable twin knows which)
            normed = (cfg.encoder.norm == "weight_norm") if hf else twin.weight_norm
            if normed:
                g, v = _weight_norm(w)
                if hf:
                    out[f"{inner}.parametrizations.weight.original0"] = g
                    out[f"{inner}.parametrizations.weight.original1"] = v
                else:
                    out[f"{inner}.weight_g"], out[f"{inner}.weight_v"] = g, v
            else:
                out[f"{inner}.weight"] = w
            out[f"{inner}.bias"] = np.asarray(layer.bias[...], np.float32)
            if layer.has_gn:
                out[f"{norm}.weight"] = np.asarray(layer.gn_scale[...], np.float32)
                out[f"{norm}.bias"] = np.asarray(layer.gn_bias[...], np.float32)
    embed = np.asarray(codec.net.quantizer.embed[...], np.float32)
    for q in range(cfg.total_codebooks):
        p = f"quantizer.layers.{q}.codebook" if hf else f"quantizer.vq.layers.{q}._codebook"
        out[f"{p}.inited"] = np.ones((1,), np.float32)
        out[f"{p}.cluster_size"] = (np.asarray(buffers["cluster_size"][q], np.float32) if buffers
                                    else np.ones((cfg.bins,), np.float32))
        out[f"{p}.embed"] = embed[q].copy()
        out[f"{p}.embed_avg"] = np.asarray(buffers["embed_avg"][q], np.float32) if buffers else embed[q].copy()
    return out


def _same_sides(cfg: CodecConfig, fmt: str):
    e, d = cfg.encoder, cfg.decoder
    diff = [f.name for f in dataclasses.fields(e) if f.name not in ("trim_right_ratio", "final_activation")
            and getattr(e, f.name) != getattr(d, f.name)]
    if diff:
        raise ValueError(f"{fmt} export needs identical encoder / decoder settings (they differ in {diff})")


def transformers_config(cfg: CodecConfig) -> dict:
    """transformers ``EncodecConfig`` fields (``config.json``) describing ``cfg`` exactly."""
    _same_sides(cfg, "transformers")
    s = cfg.encoder
    unsupported = {"final_activation": (cfg.decoder.final_activation, None),
                   "activation_alpha": (s.activation_alpha, 1.0),
                   # a weight-normed conv can be written as g = ||w||, v = w; a missing group norm cannot
                   "disable_norm_outer_blocks": ((s.disable_norm_outer_blocks, 0) if s.norm == "time_group_norm"
                                                 else None)}
    for name, pair in unsupported.items():
        if pair is not None and pair[0] != pair[1]:
            raise ValueError(f"transformers' EncodecModel cannot express {name}={pair[0]!r}; "
                             f"export with --format=audiocraft instead")
    if s.norm == "none":
        raise ValueError("transformers' EncodecModel needs norm weight_norm or time_group_norm; "
                         "export with --format=audiocraft instead")
    frame_rate = -(-cfg.sample_rate // cfg.hop_length)
    nbits = int(np.ceil(np.log2(cfg.bins)))
    bandwidth = (cfg.total_codebooks * frame_rate * nbits + 0.5) / 1000  # -> exactly total_codebooks
    return dict(
        model_type="encodec", architectures=["EncodecModel"], target_bandwidths=[bandwidth],
        sampling_rate=cfg.sample_rate, audio_channels=s.channels, normalize=cfg.renormalize,
        chunk_length_s=cfg.segment, overlap=cfg.overlap,
        hidden_size=s.dimension, num_filters=s.n_filters, num_residual_layers=s.n_residual_layers,
        upsampling_ratios=list(s.ratios), norm_type=s.norm, kernel_size=s.kernel_size,
        last_kernel_size=s.last_kernel_size, residual_kernel_size=s.residual_kernel_size,
        dilation_growth_rate=s.dilation_base, use_causal_conv=s.causal, pad_mode=s.pad_mode, compress=s.compress,
        num_lstm_layers=s.lstm, trim_right_ratio=cfg.decoder.trim_right_ratio, codebook_size=cfg.bins,
        codebook_dim=s.dimension, use_conv_shortcut=not s.true_skip)


def audiocraft_xp_cfg(cfg: CodecConfig, rvq: RVQTrainConfig = RVQTrainConfig()) -> dict:
    """An ``xp.cfg`` that ``audiocraft.models.builders.get_compression_model`` builds ``cfg`` from."""
    if cfg.encoder.causal and cfg.renormalize:
        raise ValueError("audiocraft's EncodecModel does not support renormalize with a causal model; "
                         "export with --format=transformers instead")
    if cfg.segment is not None:
        raise ValueError("audiocraft's EncodecModel has no segment-wise coding; export with --format=transformers")
    def seanet(s, decoder):
        d = dict(dimension=s.dimension, channels=s.channels, causal=s.causal, n_filters=s.n_filters,
                 n_residual_layers=s.n_residual_layers, ratios=list(s.ratios), activation="ELU",
                 activation_params={"alpha": s.activation_alpha}, norm=s.norm, norm_params={},
                 kernel_size=s.kernel_size, residual_kernel_size=s.residual_kernel_size,
                 last_kernel_size=s.last_kernel_size, dilation_base=s.dilation_base, pad_mode=s.pad_mode,
                 true_skip=s.true_skip, compress=s.compress, lstm=s.lstm,
                 disable_norm_outer_blocks=s.disable_norm_outer_blocks)
        if decoder:
            d.update(trim_right_ratio=s.trim_right_ratio, final_activation=s.final_activation,
                     final_activation_params=None)
        return d
    common = seanet(cfg.encoder, False)
    dec = {k: v for k, v in seanet(cfg.decoder, True).items() if common.get(k, object()) != v}
    return {
        "device": "cpu", "sample_rate": cfg.sample_rate, "channels": cfg.channels, "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": cfg.sample_rate,
                    "channels": cfg.channels, "causal": cfg.encoder.causal, "renormalize": cfg.renormalize},
        "seanet": {**common, "encoder": {}, "decoder": dec},
        "rvq": {"n_q": cfg.total_codebooks, "q_dropout": False, "bins": cfg.bins, "decay": rvq.decay,
                "kmeans_init": rvq.kmeans_init, "kmeans_iters": rvq.kmeans_iters,
                "threshold_ema_dead_code": rvq.threshold_ema_dead_code, "orthogonal_reg_weight": 0.0,
                "orthogonal_reg_active_codes_only": False},
    }


def export_codec(codec, out: str | os.PathLike, fmt: str) -> Path:
    """Write ``codec`` (an :class:`Encodec`, a :class:`TrainableEncodec`, or a ``(graphdef, params,
    codebook_state)`` triple) to ``out`` in ``fmt``; returns the folder written (``out``)."""
    import yaml  # noqa: PLC0415 (audiocraft format only)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {FORMATS}")
    buffers, rvq = None, RVQTrainConfig()
    if isinstance(codec, TrainableEncodec):
        codec = nnx.split(codec, nnx.Param, ...)
    if isinstance(codec, tuple):
        graphdef, params, cb = codec
        model = nnx.merge(graphdef, params, cb)
        rvq = model.rvq
        buffers = {k: np.asarray(getattr(model.quantizer, k)[...]) for k in ("cluster_size", "embed_avg")}
        codec = export_inference_codec(graphdef, params, cb)
    if isinstance(codec, FrameCodec):
        if fmt not in ("magnet_jax", "auto"):
            raise ValueError(f"a frame codec has no {fmt} layout (it is not an EnCodec): use --format=magnet_jax")
        return save_frame_codec(codec, out)
    if fmt == "magnet_jax":
        raise ValueError("an EnCodec exports as --format=transformers or audiocraft (magnet_jax is the frame "
                         "codec's layout)")
    fmt = "transformers" if fmt == "auto" else fmt
    if not isinstance(codec, Encodec):
        raise TypeError(f"cannot export a {type(codec).__name__}: pass an Encodec or a trainable codec")
    sd = state_dict(codec, fmt, buffers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "transformers":
        from safetensors.numpy import save_file
        (out / "config.json").write_text(json.dumps(transformers_config(codec.config), indent=2) + "\n")
        save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
    else:
        xp_cfg = audiocraft_xp_cfg(codec.config, rvq)
        pkg = {"best_state": sd, "xp.cfg": yaml.safe_dump(xp_cfg, sort_keys=False),
               "version": "1.3.0", "exported": True}
        save_torch_file(pkg, out / "compression_state_dict.bin")
    return out
