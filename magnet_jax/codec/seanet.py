"""SEANet encoder / decoder (EnCodec's convolutional autoencoder) in Flax NNX.

Layout: activations are ``[B, T, C]`` (NWC) throughout, which is what XLA's CPU convolutions and
matmuls like best. Weight norm: inference models hold the fused weight (``w = g * v / ||v||``, fused by
:mod:`magnet_jax.convert.encodec`); trainable models (``weight_norm=True``) hold ``g`` and ``v`` and
compute the weight in the forward, with the norm taken as ``torch.nn.utils.weight_norm(dim=0)`` does.

Padding follows the reference "streamable" convolutions exactly (audiocraft ``StreamableConv1d``,
encodec ``SConv1d``, transformers ``EncodecConv1d``):

* a conv with effective kernel ``k = (kernel-1)*dilation+1`` and stride ``s`` pads ``k - s`` in total:
  non-causal: right ``(k-s)//2``, left the rest; causal: all on the left;
* plus "extra" right padding ``ceil(L/s)*s - L`` so the last window is full;
* the configured pad mode (reflect pads short inputs with zeros first, as the reference does);
* a transposed conv trims ``kernel - stride``: non-causal right ``//2``, left the rest; causal
  ``ceil(total*trim_right_ratio)`` on the right.

Layer lists mirror the reference ``nn.Sequential`` indices (ELU layers included).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from magnet_jax.codec.config import SeanetConfig
from magnet_jax.util.params import zeros_param

_PAD_MODES = {"reflect": "reflect", "constant": "constant", "zero": "constant",
              "replicate": "edge", "circular": "wrap"}



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


class Activation(nnx.Module):
    """Final decoder activation (``final_activation`` in audiocraft / encodec)."""
    _FNS = {"Tanh": jnp.tanh, "Sigmoid": jax.nn.sigmoid, "ReLU": jax.nn.relu, "Identity": lambda x: x}

    def __init__(self, name: str):
        if name not in self._FNS:
            raise ValueError(f"unsupported final activation {name!r}")
        self.name = name

    def __call__(self, x):
        return self._FNS[self.name](x)


class _ConvBase(nnx.Module):
    """Weight (plain, or weight-norm ``g`` / ``v``), bias and optional group-norm affine of a conv.

    ``norm_axes`` are the weight axes the weight-norm reduces (all but torch's dim 0, i.e. Cout for a
    conv and Cin for a transposed conv); ``g`` keeps them as size-1 axes so ``w = g * v / ||v||``.
    """

    def _make_params(self, wshape: tuple[int, ...], norm_axes: tuple[int, ...], cout: int, *,
                     group_norm: bool, weight_norm: bool):
        self.norm_axes, self.has_gn, self.weight_norm = norm_axes, group_norm, weight_norm
        if weight_norm:
            self.g = zeros_param(*(1 if i in norm_axes else n for i, n in enumerate(wshape)))
            self.v = zeros_param(*wshape)
        else:
            self.weight = zeros_param(*wshape)
        self.bias = zeros_param(cout)
        if group_norm:
            self.gn_scale = zeros_param(cout)
            self.gn_bias = zeros_param(cout)

    def kernel(self) -> jax.Array:
        """The effective weight (weight norm applied in the forward when trainable)."""
        if not self.weight_norm:
            return self.weight[...]
        v = self.v[...]
        norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=self.norm_axes, keepdims=True))
        return v * (self.g[...] / norm)

    def _affine(self, y):
        y = y + self.bias[...]
        if self.has_gn:
            y = group_norm1(y, self.gn_scale[...], self.gn_bias[...])
        return y


class Conv1d(_ConvBase):
    """Streamable Conv1d (see module docstring). Weight stored as ``[K, Cin, Cout]``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, *,
                 causal: bool = False, pad_mode: str = "reflect", group_norm: bool = False,
                 weight_norm: bool = False):
        self.cin, self.cout, self.kernel_size, self.stride, self.dilation = cin, cout, kernel, stride, dilation
        self.causal, self.pad_mode = causal, pad_mode
        self._make_params((kernel, cin, cout), (0, 1), cout, group_norm=group_norm, weight_norm=weight_norm)

    @property
    def effective_kernel(self) -> int:
        return (self.kernel_size - 1) * self.dilation + 1

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
        w = self.kernel()
        if self.kernel_size == 1 and self.stride == 1:
            y = jnp.einsum("btc,co->bto", x, w[0], precision=jax.lax.Precision.HIGHEST)
        else:
            y = jax.lax.conv_general_dilated(
                x, w, window_strides=(self.stride,), padding="VALID", rhs_dilation=(self.dilation,),
                dimension_numbers=("NWC", "WIO", "NWC"), precision=jax.lax.Precision.HIGHEST)
        return self._affine(y)


class ConvTranspose1d(_ConvBase):
    """Streamable ConvTranspose1d as one matmul + overlap-add. Weight stored as ``[Cin, K, Cout]``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, causal: bool = False,
                 trim_right_ratio: float = 1.0, group_norm: bool = False, weight_norm: bool = False):
        self.cin, self.cout, self.kernel_size, self.stride = cin, cout, kernel, stride
        self.causal, self.trim_right_ratio = causal, trim_right_ratio
        self._make_params((cin, kernel, cout), (1, 2), cout, group_norm=group_norm, weight_norm=weight_norm)

    def trims(self) -> tuple[int, int]:
        total = self.kernel_size - self.stride
        right = math.ceil(total * self.trim_right_ratio) if self.causal else total // 2
        return total - right, right

    def __call__(self, x):
        b, t, _ = x.shape
        s, k = self.stride, self.kernel_size
        m = -(-k // s)
        w = self.kernel()
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
        out = self._affine(out)
        left, right = self.trims()
        return out[:, left: out.shape[1] - right]


class LSTM(nnx.Module):
    """Stacked unidirectional LSTM with the SEANet skip (``y = lstm(x) + x``), PyTorch gate order
    (i, f, g, o). Each layer's input projection is hoisted out of the time loop (one big matmul over
    all frames); the ``lax.scan`` only does ``h @ W_hh``."""

    def __init__(self, dim: int, num_layers: int):
        self.dim, self.num_layers = dim, num_layers
        self.w_ih = nnx.List([zeros_param(dim, 4 * dim) for _ in range(num_layers)])
        self.w_hh = nnx.List([zeros_param(dim, 4 * dim) for _ in range(num_layers)])
        self.b = nnx.List([zeros_param(4 * dim) for _ in range(num_layers)])

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
            w_hh = self.w_hh[layer][...]
            xp = jnp.einsum("btc,cg->tbg", inp, self.w_ih[layer][...], precision=hp) + self.b[layer][...]

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


class ResBlock(nnx.Module):
    """SEANet residual block: ELU, conv(k, dilation), ELU, conv(1); identity or 1x1-conv shortcut."""

    def __init__(self, dim: int, cfg: SeanetConfig, dilation: int, norm_kw: dict):
        hidden = dim // cfg.compress
        kw = dict(causal=cfg.causal, pad_mode=cfg.pad_mode, **norm_kw)
        self.alpha = cfg.activation_alpha
        self.conv1 = Conv1d(dim, hidden, cfg.residual_kernel_size, dilation=dilation, **kw)
        self.conv2 = Conv1d(hidden, dim, 1, **kw)
        self.shortcut = None if cfg.true_skip else Conv1d(dim, dim, 1, **kw)

    def __call__(self, x):
        y = self.conv2(elu(self.conv1(elu(x, self.alpha)), self.alpha))
        return (x if self.shortcut is None else self.shortcut(x)) + y


def _norm(cfg: SeanetConfig, disabled: bool, trainable: bool) -> dict:
    """Conv kwargs of one block: audiocraft drops the norm of the ``disable_norm_outer_blocks``
    outermost blocks; weight norm is a parametrisation only in trainable models (fused otherwise)."""
    return dict(group_norm=cfg.norm == "time_group_norm" and not disabled,
                weight_norm=trainable and cfg.norm == "weight_norm" and not disabled)


class Encoder(nnx.Module):
    """SEANet encoder: ``[B, N, channels] -> [B, T, dimension]`` with ``T = ceil(N / hop)``."""

    def __init__(self, cfg: SeanetConfig, *, trainable: bool = False):
        self.cfg = cfg
        n_blocks = len(cfg.ratios) + 2
        dis = cfg.disable_norm_outer_blocks
        conv_kw = dict(causal=cfg.causal, pad_mode=cfg.pad_mode)
        layers: list = [Conv1d(cfg.channels, cfg.n_filters, cfg.kernel_size, **_norm(cfg, dis >= 1, trainable),
                               **conv_kw)]
        mult = 1
        for i, ratio in enumerate(reversed(cfg.ratios)):
            block_norm = _norm(cfg, dis >= i + 2, trainable)
            for j in range(cfg.n_residual_layers):
                layers.append(ResBlock(mult * cfg.n_filters, cfg, cfg.dilation_base ** j, block_norm))
            layers.append(Elu(cfg.activation_alpha))
            layers.append(Conv1d(mult * cfg.n_filters, 2 * mult * cfg.n_filters, 2 * ratio, ratio,
                                 **block_norm, **conv_kw))
            mult *= 2
        self.lstm_index = None
        if cfg.lstm:
            self.lstm_index = len(layers)
            layers.append(LSTM(mult * cfg.n_filters, cfg.lstm))
        layers.append(Elu(cfg.activation_alpha))
        layers.append(Conv1d(mult * cfg.n_filters, cfg.dimension, cfg.last_kernel_size,
                             **_norm(cfg, dis == n_blocks, trainable), **conv_kw))
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


class Decoder(nnx.Module):
    """SEANet decoder: ``[B, T, dimension] -> [B, T * hop, channels]``."""

    def __init__(self, cfg: SeanetConfig, *, trainable: bool = False):
        self.cfg = cfg
        n_blocks = len(cfg.ratios) + 2
        dis = cfg.disable_norm_outer_blocks
        conv_kw = dict(causal=cfg.causal, pad_mode=cfg.pad_mode)
        mult = 2 ** len(cfg.ratios)
        layers: list = [Conv1d(cfg.dimension, mult * cfg.n_filters, cfg.kernel_size,
                               **_norm(cfg, dis == n_blocks, trainable), **conv_kw)]
        self.lstm_index = None
        if cfg.lstm:
            self.lstm_index = len(layers)
            layers.append(LSTM(mult * cfg.n_filters, cfg.lstm))
        self.n_pre = len(layers)
        for i, ratio in enumerate(cfg.ratios):
            block_norm = _norm(cfg, dis >= n_blocks - (i + 1), trainable)
            layers.append(Elu(cfg.activation_alpha))
            layers.append(ConvTranspose1d(mult * cfg.n_filters, mult * cfg.n_filters // 2, 2 * ratio, ratio,
                                          causal=cfg.causal, trim_right_ratio=cfg.trim_right_ratio,
                                          **block_norm))
            for j in range(cfg.n_residual_layers):
                layers.append(ResBlock(mult * cfg.n_filters // 2, cfg, cfg.dilation_base ** j, block_norm))
            mult //= 2
        layers.append(Elu(cfg.activation_alpha))
        layers.append(Conv1d(cfg.n_filters, cfg.channels, cfg.last_kernel_size,
                             **_norm(cfg, dis >= 1, trainable), **conv_kw))
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
            total += (layer.kernel_size // layer.stride + 1) * scale
            scale //= layer.stride
            total += layer.kernel_size * scale  # trimming shifts the output grid by < kernel samples
        elif isinstance(layer, ResBlock):
            total += layer.conv1.effective_kernel * scale
    return -(-total // hop) + 1
