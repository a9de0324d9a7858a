"""Frame codec: an RVQ tokenizer that works on STFT frames at the token rate (Vocos-style iSTFT head).

EnCodec's SEANet runs small-channel convolutions at the full sample rate and upsamples back to it, which
uses a CPU (and a TPU's matrix units) poorly at the widths a small model can afford. This codec does all of
its work at the frame rate, on wide vectors:

* encoder: "same"-padded Hann STFT (``n_fft = 4 * hop``, one frame per token) -> log magnitude ->
  linear -> LayerNorm -> ``depth`` ConvNeXt blocks (depthwise conv over time, LayerNorm, GELU MLP,
  layer scale) -> LayerNorm -> linear to the RVQ ``dimension``;
* the same residual VQ as EnCodec (EMA codebooks, k-means init, dead-code replacement);
* decoder: linear -> ConvNeXt blocks -> LayerNorm -> linear to a log magnitude and a phase per bin ->
  inverse STFT (windowed overlap-add), as Vocos (Siuzdak, 2023) decodes EnCodec tokens.

Where the phase comes from (``phase``):

* ``"griffin_lim"`` (default): the decoder's magnitude only. Decoding reconstructs a consistent phase with
  fast Griffin-Lim (Perraudin et al., 2013: momentum 0.99, ``gl_iters`` iterations, a fixed random start,
  so decoding is deterministic); training puts the predicted magnitude on the *input's* phase, so the
  waveform losses measure the magnitude alone. A learned phase needs a discriminator and a long run to
  become coherent across frames; without them it put the energy of sustained notes on multiples of the
  frame rate (horizontal stripes every 50 Hz). Magnitudes converge within a CPU's budget, and Griffin-Lim
  keeps each partial a clean line.
* ``"absolute"``: the decoder's phase head gives each frame's phase (Vocos).
* ``"advance"``: the phase head gives each bin's phase advance per frame (the bin's centre advance plus a
  deviation in ``(-pi, pi)``), summed over time as a phase vocoder does.

The token interface is EnCodec's: ``encode(wav [B, C, N]) -> int32 [B, K, ceil(N / hop)]``,
``decode(codes) -> [B, C, T * hop]``, ``load_encodec(folder)`` reads it (``config.json`` with
``model_type: magnet_jax_frame_codec`` + ``model.safetensors``). It is not an EnCodec: transformers /
audiocraft cannot load it, and the EnCodec configs keep exporting to those formats.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.codec.interface import CodecInterface
from magnet_jax.codec.quantizer import ResidualVQ
from magnet_jax.codec.stft import analysis, synthesis

MODEL_TYPE = "magnet_jax_frame_codec"
PHASES = ("griffin_lim", "absolute", "advance")
WEIGHTS = "model.safetensors"
_LOG_FLOOR = 1e-4
_MAX_LOG_MAG = 10.0


@dataclass(frozen=True)
class FrameCodecConfig:
    """Static shape of a frame codec (every array shape follows from it and the input length)."""
    sample_rate: int = 16000
    channels: int = 1
    hop_length: int = 320
    n_fft: int = 1280
    width: int = 256                  # ConvNeXt channels
    depth: int = 6                    # ConvNeXt blocks in the encoder and in the decoder
    mlp_ratio: int = 4
    kernel_size: int = 7
    dimension: int = 128              # RVQ vector size
    total_codebooks: int = 4
    num_codebooks: int = 4
    bins: int = 1024
    renormalize: bool = False
    phase: str = "griffin_lim"        # how the decoder gets its phase: see the module docstring
    gl_iters: int = 32                # Griffin-Lim iterations (phase="griffin_lim", decoding)
    name: str = "frame_codec"

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {self.phase!r}")
        if self.n_fft % self.hop_length or (self.n_fft - self.hop_length) % 2:
            raise ValueError(f"n_fft ({self.n_fft}) must be a multiple of hop_length ({self.hop_length}) with an "
                             f"even difference")
        if not 1 <= self.num_codebooks <= self.total_codebooks:
            raise ValueError(f"num_codebooks={self.num_codebooks} not in [1, {self.total_codebooks}]")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def replace(self, **kw) -> "FrameCodecConfig":
        return dataclasses.replace(self, **kw)

    def to_json(self) -> dict:
        return {"model_type": MODEL_TYPE, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, d: dict) -> "FrameCodecConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields - {"model_type"})
        if unknown:
            raise ValueError(f"frame codec config has unknown fields {unknown}: written by a newer magnet-jax?")
        return cls(**{k: v for k, v in d.items() if k in fields})


def _normal(rngs: nnx.Rngs, shape, std=0.02):
    return nnx.Param(jax.random.truncated_normal(rngs.params(), -2.0, 2.0, shape, jnp.float32) * std)


class _Linear(nnx.Module):
    def __init__(self, d_in: int, d_out: int, rngs: nnx.Rngs):
        self.kernel = _normal(rngs, (d_in, d_out))
        self.bias = nnx.Param(jnp.zeros((d_out,), jnp.float32))

    def __call__(self, x):
        return jnp.dot(x, self.kernel[...]) + self.bias[...]


class _LayerNorm(nnx.Module):
    def __init__(self, dim: int):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))

    def __call__(self, x):
        mu = jnp.mean(x, -1, keepdims=True)
        var = jnp.mean(jnp.square(x - mu), -1, keepdims=True)
        return (x - mu) * jax.lax.rsqrt(var + 1e-6) * self.scale[...] + self.bias[...]


class ConvNeXtBlock(nnx.Module):
    """``x + gamma * MLP(LN(depthwise_conv(x)))`` on ``[B, T, D]`` (ConvNeXt, 1-D as in Vocos)."""

    def __init__(self, dim: int, mlp_ratio: int, kernel_size: int, layer_scale: float, rngs: nnx.Rngs):
        self.dw = _normal(rngs, (kernel_size, dim), std=1.0 / math.sqrt(kernel_size))
        self.dw_bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
        self.norm = _LayerNorm(dim)
        self.fc1 = _Linear(dim, mlp_ratio * dim, rngs)
        self.fc2 = _Linear(mlp_ratio * dim, dim, rngs)
        self.gamma = nnx.Param(jnp.full((dim,), layer_scale, jnp.float32))

    def __call__(self, x):
        k = self.dw.shape[0]
        t = x.shape[1]
        xp = jnp.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
        w = self.dw[...]
        h = sum(xp[:, i:i + t] * w[i] for i in range(k)) + self.dw_bias[...]   # depthwise conv as k shifts
        h = self.fc2(jax.nn.gelu(self.fc1(self.norm(h)), approximate=True))
        return x + self.gamma[...] * h


class _Trunk(nnx.Module):
    def __init__(self, d_in: int, d_out: int, cfg: FrameCodecConfig, rngs: nnx.Rngs):
        self.proj_in = _Linear(d_in, cfg.width, rngs)
        self.norm_in = _LayerNorm(cfg.width)
        self.blocks = nnx.List([ConvNeXtBlock(cfg.width, cfg.mlp_ratio, cfg.kernel_size, 1.0 / cfg.depth, rngs)
                                for _ in range(cfg.depth)])
        self.norm_out = _LayerNorm(cfg.width)
        self.proj_out = _Linear(cfg.width, d_out, rngs)

    def __call__(self, x):
        h = self.norm_in(self.proj_in(x))
        for blk in self.blocks:
            h = blk(h)
        return self.proj_out(self.norm_out(h))


def _pad_to_hop(x, hop: int):
    n = x.shape[1]
    frames = -(-n // hop)
    return jnp.pad(x, ((0, 0), (0, frames * hop - n), (0, 0)))


class FrameEncoder(nnx.Module):
    """``x [B, N, C]`` -> latents ``[B, ceil(N / hop), dimension]``."""

    def __init__(self, cfg: FrameCodecConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.trunk = _Trunk(cfg.channels * cfg.n_bins, cfg.dimension, cfg, rngs)

    def __call__(self, x):
        cfg = self.cfg
        x = jnp.transpose(_pad_to_hop(x, cfg.hop_length), (0, 2, 1))            # [B, C, N]
        spec = analysis(x, cfg.n_fft, cfg.hop_length)                             # [B, C, T, F]
        feats = jnp.log(jnp.abs(spec) + _LOG_FLOOR)
        b, c, t, f = feats.shape
        return self.trunk(jnp.transpose(feats, (0, 2, 1, 3)).reshape(b, t, c * f))


class FrameDecoder(nnx.Module):
    """latents ``[B, T, dimension]`` -> audio ``[B, T * hop, C]`` (log magnitude + phase -> iSTFT)."""

    def __init__(self, cfg: FrameCodecConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.trunk = _Trunk(cfg.dimension, cfg.channels * 2 * cfg.n_bins, cfg, rngs)

    def __call__(self, z, reference=None):
        """``reference`` (training, ``phase="griffin_lim"``): the input audio ``[B, N, C]`` whose STFT phase
        carries the predicted magnitude; None decodes with Griffin-Lim."""
        cfg = self.cfg
        b, t, _ = z.shape
        h = self.trunk(z).reshape(b, t, cfg.channels, 2, cfg.n_bins)
        mag = jnp.exp(jnp.minimum(h[..., 0, :], _MAX_LOG_MAG))
        phase = h[..., 1, :]
        if cfg.phase == "griffin_lim":
            mag = jnp.transpose(mag, (0, 2, 1, 3))                                      # [B, C, T, F]
            if reference is None:
                y = griffin_lim(mag, cfg.n_fft, cfg.hop_length, cfg.gl_iters)
            else:
                x = jnp.transpose(_pad_to_hop(reference, cfg.hop_length), (0, 2, 1))[..., :t * cfg.hop_length]
                ref = jax.lax.stop_gradient(analysis(x, cfg.n_fft, cfg.hop_length))
                unit = ref / jnp.maximum(jnp.abs(ref), 1e-8).astype(ref.dtype)
                unit = jnp.where(jnp.abs(ref) > 1e-8, unit, jnp.ones_like(unit))
                y = synthesis(mag * unit, cfg.n_fft, cfg.hop_length)
            return jnp.transpose(y, (0, 2, 1))
        if cfg.phase == "advance":
            k = np.arange(cfg.n_bins)
            centre = np.mod(2 * np.pi * k * cfg.hop_length / cfg.n_fft, 2 * np.pi).astype(np.float32)
            phase = jnp.cumsum(centre + np.float32(np.pi) * jnp.tanh(phase), axis=1)
        spec = jax.lax.complex(mag * jnp.cos(phase), mag * jnp.sin(phase))      # [B, T, C, F]
        y = synthesis(jnp.transpose(spec, (0, 2, 1, 3)), cfg.n_fft, cfg.hop_length)  # [B, C, T * hop]
        return jnp.transpose(y, (0, 2, 1))


def griffin_lim(mag, n_fft: int, hop: int, iters: int, momentum: float = 0.99):
    """Fast Griffin-Lim (Perraudin et al., 2013; librosa's ``griffinlim`` update) for magnitudes
    ``[..., T, n_fft // 2 + 1]`` of :func:`~magnet_jax.codec.stft.analysis` frames -> audio ``[..., T * hop]``.
    Starts from fixed pseudo-random phases (deterministic)."""
    angles = jnp.exp(1j * jax.random.uniform(jax.random.PRNGKey(0), mag.shape, jnp.float32, 0, 2 * np.pi))
    beta = momentum / (1 + momentum)

    def body(_, carry):
        angles, prev = carry
        rebuilt = analysis(synthesis(mag * angles, n_fft, hop), n_fft, hop)
        a = rebuilt - beta * prev
        return a / jnp.maximum(jnp.abs(a), 1e-8), rebuilt
    angles, _ = jax.lax.fori_loop(0, iters, body, (angles.astype(jnp.complex64), jnp.zeros_like(angles,
                                                                                          jnp.complex64)))
    return synthesis(mag * angles, n_fft, hop)


class FrameCodecNet(nnx.Module):
    """The parameters of the inference codec: encoder, decoder, codebooks."""

    def __init__(self, cfg: FrameCodecConfig, rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        self.encoder = FrameEncoder(cfg, rngs)
        self.decoder = FrameDecoder(cfg, rngs)
        self.quantizer = ResidualVQ(cfg.dimension, cfg.bins, cfg.total_codebooks)


def _f_encode(graphdef, state, x, *, n_q):
    net = nnx.merge(graphdef, state)
    return net.quantizer.encode(net.encoder(x), n_q)


def _f_decode(graphdef, state, codes):
    net = nnx.merge(graphdef, state)
    return net.decoder(net.quantizer.decode(codes))


class FrameCodec(CodecInterface):
    """Inference frame codec with :class:`magnet_jax.codec.Encodec`'s public interface."""

    def __init__(self, config: FrameCodecConfig, net: FrameCodecNet | None = None):
        self.config = config
        self.net = net if net is not None else FrameCodecNet(config)
        self.chunk_seconds = None           # frame-rate work: whole clips fit in memory
        self._compiled = None

    def with_num_codebooks(self, n: int) -> "FrameCodec":
        return FrameCodec(self.config.replace(num_codebooks=n), self.net)

    def _fns(self):
        if self._compiled is None:
            graphdef = nnx.graphdef(self.net)
            self._compiled = dict(encode=jax.jit(functools.partial(_f_encode, graphdef), static_argnames=("n_q",)),
                                  decode=jax.jit(functools.partial(_f_decode, graphdef)))
        return self._compiled

    def encode_with_scale(self, wav, *, chunk_seconds="default"):
        """``wav [B, C, N]`` -> (codes ``int32 [B, K, ceil(N / hop)]``, None)."""
        return self._fns()["encode"](nnx.state(self.net), self._check_wav(wav), n_q=self.num_codebooks), None

    def encode(self, wav, *, chunk_seconds="default") -> jax.Array:
        return self.encode_with_scale(wav)[0]

    def decode(self, codes, scale=None, *, chunk_seconds="default") -> jax.Array:
        """codes ``[B, K, T]`` -> audio ``float32 [B, C, T * hop]``."""
        codes = jnp.asarray(codes)
        if codes.ndim != 3 or codes.shape[1] > self.total_codebooks:
            raise ValueError(f"expected codes of shape [B, K<={self.total_codebooks}, T], got {tuple(codes.shape)}")
        y = self._fns()["decode"](nnx.state(self.net), codes.astype(jnp.int32))
        y = jnp.transpose(y, (0, 2, 1))
        return y if scale is None else y * jnp.asarray(scale)[:, None, None]


# ------------------------------------------------------------------ files

def is_frame_codec_dir(path: str | os.PathLike) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == MODEL_TYPE
    except (ValueError, OSError):
        return False


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = np.asarray(v, np.float32)
    return out


def save_frame_codec(codec: FrameCodec, out: str | os.PathLike) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` into ``out`` (created)."""
    from safetensors.numpy import save_file
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_flat(nnx.to_pure_dict(nnx.state(codec.net))), str(out / WEIGHTS))
    (out / "config.json").write_text(json.dumps(codec.config.to_json(), indent=2) + "\n")
    return out


def load_frame_codec(path: str | os.PathLike, *, num_codebooks: int | None = None) -> FrameCodec:
    """Reads a folder written by :func:`save_frame_codec`; every tensor's shape is checked."""
    from safetensors.numpy import load_file
    path = Path(path)
    cfg = FrameCodecConfig.from_json(json.loads((path / "config.json").read_text()))
    if num_codebooks is not None:
        cfg = cfg.replace(num_codebooks=int(num_codebooks))
    net = FrameCodecNet(cfg)
    state = nnx.state(net)
    want = _flat(nnx.to_pure_dict(state))
    got = load_file(str(path / WEIGHTS))
    if set(got) != set(want):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise ValueError(f"{path / WEIGHTS} does not match its config.json: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}")
    for k, v in want.items():
        if got[k].shape != v.shape:
            raise ValueError(f"{path / WEIGHTS}: {k} has shape {got[k].shape}, config.json implies {v.shape}")
    nested: dict = {}
    for k, v in got.items():
        node = nested
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(int(p) if p.isdigit() else p, {})
        node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = jnp.asarray(v)
    nnx.replace_by_pure_dict(state, nested)
    nnx.update(net, state)
    return FrameCodec(cfg, net)
