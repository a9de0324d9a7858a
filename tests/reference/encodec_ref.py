"""Reference PyTorch EnCodec models with *all* weights random, for the codec parity tests.

Three builders, one per checkpoint layout: transformers ``EncodecModel``, audiocraft-native
``EncodecModel`` (through ``audiocraft.models.builders.get_compression_model``, i.e. the path of an
``xp.cfg`` + ``best_state`` checkpoint) and the ``encodec`` package. :func:`randomize_` draws every
parameter and buffer: conv weights, weight-norm gains g and directions v, biases, group-norm
affines, LSTM matrices and biases, and the RVQ codebooks. Codebooks are drawn from the
(running-residual) encoder latents of a probe signal plus noise, so every level's codes vary and
the nearest-code margins are well above float rounding (a fresh quantizer has all-zero codebooks
and would give all-zero codes, which proves nothing). ``inited`` is set to 1.

Import ``tests.reference.shim`` before this module (it stubs audiocraft's optional imports and
the CUDA-only torchaudio that the ``encodec`` package imports).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def test_signal(kind: str, batch: int, channels: int, length: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """``[batch, channels, length]`` float32: 'tone', 'burst' (gated noise), 'silence' or 'mix'."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / sample_rate
    out = np.zeros((batch, channels, length), np.float32)
    if kind == "silence":
        return out
    for b in range(batch):
        for c in range(channels):
            if kind in ("tone", "mix"):
                f0 = rng.uniform(80, sample_rate / 8)
                out[b, c] += 0.3 * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.28))
                out[b, c] += 0.1 * np.sin(2 * np.pi * 2.7 * f0 * t)
            if kind in ("burst", "mix"):
                gate = np.zeros(length)
                for _ in range(3):
                    s = rng.integers(0, max(1, length - 1))
                    gate[s: s + rng.integers(length // 10 + 1, length // 3 + 2)] = 1.0
                out[b, c] += (0.2 * rng.standard_normal(length) * gate).astype(np.float32)
    return out


def _codebooks(model_kind):
    if model_kind == "hf":
        return lambda m: [layer.codebook for layer in m.quantizer.layers]
    return lambda m: [layer._codebook for layer in m.quantizer.vq.layers]


@torch.no_grad()
def randomize_(model: torch.nn.Module, kind: str, sample_rate: int, channels: int, seed: int = 0,
               normalize_probe: bool = False):
    """Draw every parameter / buffer of a reference EnCodec model (see module docstring)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        leaf = name.split(".")[-1]
        if leaf in ("weight_g", "original0"):
            p.copy_(0.6 + 0.8 * torch.rand(p.shape, generator=g))
        elif ".norm." in name and leaf == "weight":  # GroupNorm affine
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        elif leaf.startswith("bias"):
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
        elif "lstm" in name:
            h = p.shape[-1]
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / math.sqrt(h))
        else:  # conv weight or weight-norm direction v
            fan_in = p[0].numel() if "convtr" not in name else p.shape[0] * p.shape[2]
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
    # codebooks from the latents of a probe signal (level by level on the running residual)
    probe = torch.from_numpy(test_signal("mix", 2, channels, int(0.8 * sample_rate) + 17, sample_rate, seed + 1))
    probe = probe + 0.05 * torch.randn(probe.shape, generator=g)
    if normalize_probe:
        probe = probe / probe.mean(1, keepdim=True).pow(2).mean(-1, keepdim=True).sqrt()
    lat = model.encoder(probe).permute(0, 2, 1).reshape(-1, model.encoder(probe).shape[1])
    residual = lat.clone()
    for cb in _codebooks(kind)(model):
        bins = cb.embed.shape[0]
        idx = torch.randint(0, residual.shape[0], (bins,), generator=g)
        std = residual.std()
        embed = residual[idx] + 0.5 * std * torch.randn(bins, residual.shape[1], generator=g)
        cb.embed.copy_(embed)
        cb.embed_avg.copy_(embed)
        cb.cluster_size.fill_(1.0)
        cb.inited.fill_(1.0)
        d = -(residual.pow(2).sum(1, keepdim=True) - 2 * residual @ embed.t() + embed.pow(2).sum(1)[None])
        residual = residual - embed[d.argmax(-1)]
    return model


# ----------------------------------------------------------------------------- transformers
def hf_model(seed=0, **cfg_kw):
    from transformers import EncodecConfig, EncodecModel
    cfg = EncodecConfig(**cfg_kw)
    model = EncodecModel(cfg).eval()
    return randomize_(model, "hf", cfg.sampling_rate, cfg.audio_channels, seed, normalize_probe=cfg.normalize)


def hf_32khz_kwargs():
    """facebook/encodec_32khz (REFERENCE.md A5: reflect padding as in its config.json)."""
    return dict(upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], num_filters=64, sampling_rate=32000,
                codebook_size=2048, use_causal_conv=False, normalize=False, use_conv_shortcut=False,
                audio_channels=1, hidden_size=128, num_residual_layers=1, norm_type="weight_norm",
                kernel_size=7, last_kernel_size=7, residual_kernel_size=3, dilation_growth_rate=2,
                pad_mode="reflect", compress=2, num_lstm_layers=2)


@torch.no_grad()
def hf_encode_decode(model, wav: np.ndarray, bandwidth: float):
    x = torch.from_numpy(wav)
    enc = model.encode(x, None, bandwidth)
    codes = enc.audio_codes  # [1, B, K, T]
    audio = model.decode(codes, enc.audio_scales)[0]
    return codes[0].numpy(), audio.numpy()


# ----------------------------------------------------------------------------- audiocraft native
def native_cfg(sample_rate=16000, channels=1, ratios=(8, 5, 4, 2), n_filters=64, dimension=128, lstm=2,
               n_q=4, bins=2048, pad_mode="constant", causal=False, renormalize=False, norm="weight_norm",
               n_residual_layers=1, true_skip=True, disable_norm_outer_blocks=0):
    """The yaml values of config/model/encodec/default.yaml + encodec_large_nq4_s{320,640}, as an
    ``xp.cfg`` dict (interpolations are written the way hydra exports leave them)."""
    return {
        "device": "cpu", "sample_rate": sample_rate, "channels": channels, "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": "${sample_rate}",
                    "channels": "${channels}", "causal": causal, "renormalize": renormalize},
        "seanet": {"dimension": dimension, "channels": "${channels}", "causal": "${encodec.causal}",
                   "n_filters": n_filters, "n_residual_layers": n_residual_layers, "ratios": list(ratios),
                   "activation": "ELU", "activation_params": {"alpha": 1.0}, "norm": norm, "norm_params": {},
                   "kernel_size": 7, "residual_kernel_size": 3, "last_kernel_size": 7, "dilation_base": 2,
                   "pad_mode": pad_mode, "true_skip": true_skip, "compress": 2, "lstm": lstm,
                   "disable_norm_outer_blocks": disable_norm_outer_blocks,
                   "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
                   "encoder": {}},
        "rvq": {"n_q": n_q, "q_dropout": False, "bins": bins, "decay": 0.99, "kmeans_init": True,
                "kmeans_iters": 50, "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0,
                "orthogonal_reg_active_codes_only": False},
    }


def native_model(cfg: dict, seed=0):
    from omegaconf import OmegaConf
    from audiocraft.models import builders
    model = builders.get_compression_model(OmegaConf.create(cfg)).eval()
    return randomize_(model, "native", model.sample_rate, model.channels, seed,
                      normalize_probe=cfg["encodec"]["renormalize"])


def native_checkpoint(model, cfg: dict, path):
    from omegaconf import OmegaConf
    torch.save({"xp.cfg": OmegaConf.to_yaml(OmegaConf.create(cfg)), "best_state": model.state_dict(),
                "version": "test", "exported": True}, path)


@torch.no_grad()
def native_encode_decode(model, wav: np.ndarray):
    codes, scale = model.encode(torch.from_numpy(wav))
    audio = model.decode(codes, scale)
    return codes.numpy(), audio.numpy()


# ----------------------------------------------------------------------------- encodec package
def pkg_model(which="24khz", seed=0, **small):
    """``encodec.EncodecModel`` as built by ``encodec_model_{24,48}khz(pretrained=False)``, or a
    smaller model with the same constructor arguments (``small``: n_filters, ratios, lstm, n_q, bins)."""
    import encodec.modules as m
    import encodec.quantization as qt
    from encodec import EncodecModel
    if which == "24khz":
        kw = dict(channels=1, norm="weight_norm", causal=True)
        top = dict(target_bandwidths=[1.5, 3.0, 6, 12.0, 24.0], sample_rate=24000, channels=1, normalize=False,
                   segment=None)
    else:
        kw = dict(channels=2, norm="time_group_norm", causal=False)
        top = dict(target_bandwidths=[3.0, 6.0, 12.0, 24.0], sample_rate=48000, channels=2, normalize=True,
                   segment=1.0)
    arch = dict(n_filters=small.get("n_filters", 32), ratios=small.get("ratios", [8, 5, 4, 2]),
                lstm=small.get("lstm", 2), dimension=small.get("dimension", 128))
    encoder = m.SEANetEncoder(**kw, **arch)
    decoder = m.SEANetDecoder(**kw, **arch)
    frame_rate = math.ceil(top["sample_rate"] / encoder.hop_length)
    n_q = small.get("n_q", int(1000 * top["target_bandwidths"][-1] // (frame_rate * 10)))
    quantizer = qt.ResidualVectorQuantizer(dimension=arch["dimension"], n_q=n_q, bins=small.get("bins", 1024))
    model = EncodecModel(encoder, decoder, quantizer, top["target_bandwidths"], top["sample_rate"],
                         top["channels"], normalize=top["normalize"], segment=top["segment"]).eval()
    return randomize_(model, "pkg", top["sample_rate"], top["channels"], seed, normalize_probe=top["normalize"])
