"""SEANet encoder / decoder (EnCodec's convolutional autoencoder) in Flax NNX.

Layout: activations are ``[B, T, C]`` (NWC) throughout, which is what XLA's CPU convolutions and
matmuls like best. Weight norm is *fused at load time* (``w = g * v / ||v||``, norm over every dim
but 0, as ``torch.nn.utils.weight_norm`` does), so inference sees plain convolutions.

Padding follows the reference "streamable" convolutions exactly (audiocraft ``StreamableConv1d``,
encodec ``SConv1d``, transformers ``EncodecConv1d``):

* a conv with effective kernel ``k = (kernel-1)*dilation+1`` and stride ``s`` pads ``k - s`` in total:
  non-causal: right ``(k-s)//2``, left the rest; causal: all on the left;
* plus "extra" right padding ``ceil(L/s)*s - L`` so the last window is full;
* the configured pad mode (reflect pads short inputs with zeros first, as the reference does);
* a transposed conv trims ``kernel - stride``: non-causal right ``//2``, left the rest; causal
  ``ceil(total*trim_right_ratio)`` on the right.

Layer lists mirror the reference ``nn.Sequential`` indices (ELU layers included), so a state dict
key ``encoder.layers.{i}...`` maps to ``Encoder.layers[i]``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .config import SeanetConfig

_PAD_MODES = {"reflect": "reflect", "constant": "constant", "zero": "constant",
              "replicate": "edge", "circular": "wrap"}


def _param(shape) -> nnx.Param:
    return nnx.Param(jnp.zeros(shape, jnp.float32))


def _set(param: nnx.Param, value, name: str):
    value = np.asarray(value, dtype=np.float32)
    if tuple(value.shape) != tuple(param.value.shape):
        raise ValueError(f"{name}: checkpoint shape {tuple(value.shape)} != model shape "
                         f"{tuple(param.value.shape)}")
    param.value = jnp.asarray(value)


def _take(sd: dict, key: str):
    if key not in sd:
        raise KeyError(f"missing checkpoint tensor {key!r}")
    return sd.pop(key)


def pad1d(x: jax.Array, left: int, right: int, mode: str) -> jax.Array:
    """Pad the time axis of ``[B, T, C]`` like the reference ``pad1d`` (reflect-safe on short input)."""
    if left == 0 and right == 0:
        return x
    mode = _PAD_MODES[mode]
    if mode == "reflect":
        length = x.shape[1]
        max_pad = max(left, right)
        extra = 0
        if length <= max_pad:
            extra = max_pad - length + 1
            x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
        y = jnp.pad(x, ((0, 0), (left, right), (0, 0)), mode="reflect")
        return y[:, : y.shape[1] - extra] if extra else y
    return jnp.pad(x, ((0, 0), (left, right), (0, 0)), mode=mode)


def elu(x, alpha: float = 1.0):
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0.0)))


def group_norm1(x, scale, bias, eps: float = 1e-5):
    """``nn.GroupNorm(1, C)`` on ``[B, T, C]``: statistics over (T, C) per example."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


class Elu(nnx.Module):
    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def __call__(self, x):
        return elu(x, self.alpha)

    def load(self, sd, prefix):
        pass


class Activation(nnx.Module):
    """Final decoder activation (``final_activation`` in audiocraft / encodec)."""
    _FNS = {"Tanh": jnp.tanh, "Sigmoid": jax.nn.sigmoid, "ReLU": jax.nn.relu, "Identity": lambda x: x}

    def __init__(self, name: str):
        if name not in self._FNS:
            raise ValueError(f"unsupported final activation {name!r}")
        self.name = name

    def __call__(self, x):
        return self._FNS[self.name](x)

    def load(self, sd, prefix):
        pass


def _load_conv(mod, sd: dict, prefix: str, axes: tuple[int, ...]):
    """Weight (transposed from the torch layout by ``axes``), bias and optional group-norm affine."""
    _set(mod.weight, np.transpose(_take(sd, f"{prefix}.conv.weight"), axes), f"{prefix}.conv.weight")
    _set(mod.bias, _take(sd, f"{prefix}.conv.bias"), f"{prefix}.conv.bias")
    if mod.has_gn:
        _set(mod.gn_scale, _take(sd, f"{prefix}.norm.weight"), f"{prefix}.norm.weight")
        _set(mod.gn_bias, _take(sd, f"{prefix}.norm.bias"), f"{prefix}.norm.bias")


class Conv1d(nnx.Module):
    """Streamable Conv1d (see module docstring). Weight stored as ``[K, Cin, Cout]``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, *,
                 causal: bool = False, pad_mode: str = "reflect", group_norm: bool = False):
        self.cin, self.cout, self.kernel, self.stride, self.dilation = cin, cout, kernel, stride, dilation
        self.causal, self.pad_mode, self.has_gn = causal, pad_mode, group_norm
        self.weight = _param((kernel, cin, cout))
        self.bias = _param((cout,))
        if group_norm:
            self.gn_scale = _param((cout,))
            self.gn_bias = _param((cout,))

    @property
    def effective_kernel(self) -> int:
        return (self.kernel - 1) * self.dilation + 1

    def paddings(self, length: int) -> tuple[int, int]:
        k, s = self.effective_kernel, self.stride
        total = k - s
        extra = -(-length // s) * s - length  # ceil(L/s)*s - L: the last window is full
        if self.causal:
            return total, extra
        right = total // 2
        return total - right, right + extra

    def __call__(self, x):
        left, right = self.paddings(x.shape[1])
        x = pad1d(x, left, right, self.pad_mode)
        w = self.weight.value
        if self.kernel == 1 and self.stride == 1:
            y = jnp.einsum("btc,co->bto", x, w[0], precision=jax.lax.Precision.HIGHEST)
        else:
            y = jax.lax.conv_general_dilated(
                x, w, window_strides=(self.stride,), padding="VALID", rhs_dilation=(self.dilation,),
                dimension_numbers=("NWC", "WIO", "NWC"), precision=jax.lax.Precision.HIGHEST)
        y = y + self.bias.value
        if self.has_gn:
            y = group_norm1(y, self.gn_scale.value, self.gn_bias.value)
        return y

    def load(self, sd: dict, prefix: str):
        _load_conv(self, sd, prefix, (2, 1, 0))  # torch layout [Cout, Cin, K] -> [K, Cin, Cout]


class ConvTranspose1d(nnx.Module):
    """Streamable ConvTranspose1d as one matmul + overlap-add. Weight stored as ``[Cin, K, Cout]``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, causal: bool = False,
                 trim_right_ratio: float = 1.0, group_norm: bool = False):
        self.cin, self.cout, self.kernel, self.stride = cin, cout, kernel, stride
        self.causal, self.trim_right_ratio, self.has_gn = causal, trim_right_ratio, group_norm
        self.weight = _param((cin, kernel, cout))
        self.bias = _param((cout,))
        if group_norm:
            self.gn_scale = _param((cout,))
            self.gn_bias = _param((cout,))

    def trims(self) -> tuple[int, int]:
        total = self.kernel - self.stride
        right = math.ceil(total * self.trim_right_ratio) if self.causal else total // 2
        return total - right, right

    def __call__(self, x):
        b, t, _ = x.shape
        s, k = self.stride, self.kernel
        m = -(-k // s)
        w = self.weight.value
        if m * s != k:
            w = jnp.pad(w, ((0, 0), (0, m * s - k), (0, 0)))
        # y[b, n, j, r, o]: contribution of input frame n to output sample (n + j) * s + r
        y = jnp.einsum("btc,cko->btko", x, w, precision=jax.lax.Precision.HIGHEST)
        y = y.reshape(b, t, m, s, self.cout)
        out = None
        for j in range(m):
            part = jnp.pad(y[:, :, j], ((0, 0), (j, m - 1 - j), (0, 0), (0, 0)))
            out = part if out is None else out + part
        out = out.reshape(b, (t + m - 1) * s, self.cout)[:, : (t - 1) * s + k]
        out = out + self.bias.value
        if self.has_gn:
            out = group_norm1(out, self.gn_scale.value, self.gn_bias.value)
        left, right = self.trims()
        return out[:, left: out.shape[1] - right]

    def load(self, sd: dict, prefix: str):
        _load_conv(self, sd, prefix, (0, 2, 1))  # torch layout [Cin, Cout, K] -> [Cin, K, Cout]


class LSTM(nnx.Module):
    """Stacked unidirectional LSTM with the SEANet skip (``y = lstm(x) + x``), PyTorch gate order
    (i, f, g, o). Each layer's input projection is hoisted out of the time loop (one big matmul over
    all frames); the ``lax.scan`` only does ``h @ W_hh``."""

    def __init__(self, dim: int, num_layers: int):
        self.dim, self.num_layers = dim, num_layers
        self.w_ih = nnx.List([_param((dim, 4 * dim)) for _ in range(num_layers)])
        self.w_hh = nnx.List([_param((dim, 4 * dim)) for _ in range(num_layers)])
        self.b = nnx.List([_param((4 * dim,)) for _ in range(num_layers)])

    def zero_state(self, batch: int):
        z = jnp.zeros((self.num_layers, batch, self.dim), jnp.float32)
        return z, z

    def run(self, x, state):
        """``x [B, T, C]``, ``state = (h, c)`` each ``[L, B, C]`` -> (``y [B, T, C]``, new state)."""
        hp = jax.lax.Precision.HIGHEST
        h_all, c_all = state
        inp = x
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            w_hh = self.w_hh[layer].value
            xp = jnp.einsum("btc,cg->tbg", inp, self.w_ih[layer].value, precision=hp) + self.b[layer].value

            def step(carry, xt, w_hh=w_hh):
                h, c = carry
                gates = xt + jnp.dot(h, w_hh, precision=hp)
                i, f, g, o = jnp.split(gates, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h

            (h, c), ys = jax.lax.scan(step, (h_all[layer], c_all[layer]), xp)
            new_h.append(h)
            new_c.append(c)
            inp = jnp.transpose(ys, (1, 0, 2))
        return inp + x, (jnp.stack(new_h), jnp.stack(new_c))

    def __call__(self, x):
        return self.run(x, self.zero_state(x.shape[0]))[0]

    def load(self, sd: dict, prefix: str):
        for layer in range(self.num_layers):
            p = f"{prefix}.lstm"
            w_ih = _take(sd, f"{p}.weight_ih_l{layer}")
            w_hh = _take(sd, f"{p}.weight_hh_l{layer}")
            b = (np.asarray(_take(sd, f"{p}.bias_ih_l{layer}"), np.float32)
                 + np.asarray(_take(sd, f"{p}.bias_hh_l{layer}"), np.float32))
            _set(self.w_ih[layer], np.asarray(w_ih).T, f"{p}.weight_ih_l{layer}")
            _set(self.w_hh[layer], np.asarray(w_hh).T, f"{p}.weight_hh_l{layer}")
            _set(self.b[layer], b, f"{p}.bias_l{layer}")


class ResBlock(nnx.Module):
    """SEANet residual block: ELU, conv(k, dilation), ELU, conv(1); identity or 1x1-conv shortcut."""

    def __init__(self, dim: int, cfg: SeanetConfig, dilation: int, group_norm: bool):
        hidden = dim // cfg.compress
        kw = dict(causal=cfg.causal, pad_mode=cfg.pad_mode, group_norm=group_norm)
        self.alpha = cfg.activation_alpha
        self.conv1 = Conv1d(dim, hidden, cfg.residual_kernel_size, dilation=dilation, **kw)
        self.conv2 = Conv1d(hidden, dim, 1, **kw)
        self.shortcut = None if cfg.true_skip else Conv1d(dim, dim, 1, **kw)

    def __call__(self, x):
        y = self.conv2(elu(self.conv1(elu(x, self.alpha)), self.alpha))
        return (x if self.shortcut is None else self.shortcut(x)) + y

    def load(self, sd, prefix):
        self.conv1.load(sd, f"{prefix}.block.1")
        self.conv2.load(sd, f"{prefix}.block.3")
        if self.shortcut is not None:
            self.shortcut.load(sd, f"{prefix}.shortcut")


def _gn(cfg: SeanetConfig, disabled: bool) -> bool:
    return cfg.norm == "time_group_norm" and not disabled


class Encoder(nnx.Module):
    """SEANet encoder: ``[B, N, channels] -> [B, T, dimension]`` with ``T = ceil(N / hop)``."""

    def __init__(self, cfg: SeanetConfig):
        self.cfg = cfg
        n_blocks = len(cfg.ratios) + 2
        dis = cfg.disable_norm_outer_blocks
        conv_kw = dict(causal=cfg.causal, pad_mode=cfg.pad_mode)
        layers: list = [Conv1d(cfg.channels, cfg.n_filters, cfg.kernel_size, group_norm=_gn(cfg, dis >= 1),
                               **conv_kw)]
        mult = 1
        for i, ratio in enumerate(reversed(cfg.ratios)):
            block_gn = _gn(cfg, dis >= i + 2)
            for j in range(cfg.n_residual_layers):
                layers.append(ResBlock(mult * cfg.n_filters, cfg, cfg.dilation_base ** j, block_gn))
            layers.append(Elu(cfg.activation_alpha))
            layers.append(Conv1d(mult * cfg.n_filters, 2 * mult * cfg.n_filters, 2 * ratio, ratio,
                                 group_norm=block_gn, **conv_kw))
            mult *= 2
        self.lstm_index = None
        if cfg.lstm:
            self.lstm_index = len(layers)
            layers.append(LSTM(mult * cfg.n_filters, cfg.lstm))
        layers.append(Elu(cfg.activation_alpha))
        layers.append(Conv1d(mult * cfg.n_filters, cfg.dimension, cfg.last_kernel_size,
                             group_norm=_gn(cfg, dis == n_blocks), **conv_kw))
        self.layers = nnx.List(layers)
        self.n_pre = self.lstm_index if self.lstm_index is not None else len(layers) - 2

    def pre(self, x):
        """Convolutional part before the LSTM (all downsampling), finite receptive field."""
        for layer in list(self.layers)[: self.n_pre]:
            x = layer(x)
        return x

    def post(self, x):
        """ELU + last conv after the LSTM."""
        for layer in list(self.layers)[len(self.layers) - 2:]:
            x = layer(x)
        return x

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def load(self, sd, prefix="encoder.layers"):
        for i, layer in enumerate(self.layers):
            layer.load(sd, f"{prefix}.{i}")


class Decoder(nnx.Module):
    """SEANet decoder: ``[B, T, dimension] -> [B, T * hop, channels]``."""

    def __init__(self, cfg: SeanetConfig):
        self.cfg = cfg
        n_blocks = len(cfg.ratios) + 2
        dis = cfg.disable_norm_outer_blocks
        conv_kw = dict(causal=cfg.causal, pad_mode=cfg.pad_mode)
        mult = 2 ** len(cfg.ratios)
        layers: list = [Conv1d(cfg.dimension, mult * cfg.n_filters, cfg.kernel_size,
                               group_norm=_gn(cfg, dis == n_blocks), **conv_kw)]
        self.lstm_index = None
        if cfg.lstm:
            self.lstm_index = len(layers)
            layers.append(LSTM(mult * cfg.n_filters, cfg.lstm))
        self.n_pre = len(layers)
        for i, ratio in enumerate(cfg.ratios):
            block_gn = _gn(cfg, dis >= n_blocks - (i + 1))
            layers.append(Elu(cfg.activation_alpha))
            layers.append(ConvTranspose1d(mult * cfg.n_filters, mult * cfg.n_filters // 2, 2 * ratio, ratio,
                                          causal=cfg.causal, trim_right_ratio=cfg.trim_right_ratio,
                                          group_norm=block_gn))
            for j in range(cfg.n_residual_layers):
                layers.append(ResBlock(mult * cfg.n_filters // 2, cfg, cfg.dilation_base ** j, block_gn))
            mult //= 2
        layers.append(Elu(cfg.activation_alpha))
        layers.append(Conv1d(cfg.n_filters, cfg.channels, cfg.last_kernel_size,
                             group_norm=_gn(cfg, dis >= 1), **conv_kw))
        if cfg.final_activation is not None:
            layers.append(Activation(cfg.final_activation))
        self.layers = nnx.List(layers)

    def pre(self, z):
        """First conv + LSTM, at the frame rate."""
        for layer in list(self.layers)[: self.n_pre]:
            z = layer(z)
        return z

    def up(self, z):
        """Upsampling part (finite receptive field)."""
        for layer in list(self.layers)[self.n_pre:]:
            z = layer(z)
        return z

    def __call__(self, z):
        return self.up(self.pre(z))

    def load(self, sd, prefix="decoder.layers"):
        for i, layer in enumerate(self.layers):
            layer.load(sd, f"{prefix}.{i}")


def receptive_margin(layers, hop: int, scale: int = 1) -> int:
    """A safe upper bound, in frames of ``hop`` samples, on how far (left or right) any output of a
    stack of streamable convs looks; ``scale`` is the number of samples per input position (1 for the
    encoder, ``hop`` for the decoder's upsampling stack). Chunked coding discards this much overlap."""
    total = 0  # samples
    for layer in layers:
        if isinstance(layer, Conv1d):
            total += layer.effective_kernel * scale
            scale *= layer.stride
        elif isinstance(layer, ConvTranspose1d):
            total += (layer.kernel // layer.stride + 1) * scale
            scale //= layer.stride
            total += layer.kernel * scale  # trimming shifts the output grid by < kernel samples
        elif isinstance(layer, ResBlock):
            total += layer.conv1.effective_kernel * scale
    return -(-total // hop) + 1
