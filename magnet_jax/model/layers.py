"""Building blocks of the LM transformer (audiocraft ``StreamingTransformerLayer``, norm_first).

Layer order (per layer, pre-norm, no biases, dropout 0)::

    x = x + SelfAttn(LN1(x), mask)            # MAGNeT: band for stage > 0; MusicGen: causal
    x = x + CrossAttn(LN_cross(x), text)      # keys / values from the (un-normalised) text
    x = x + W2 gelu_erf(W1 LN2(x))

Weights are stored in layouts that make the sharding names obvious (q/k/v kernels ``[embed, (qkv,)
heads, head_dim]``, output ``[heads, head_dim, embed]``); every projection runs as one 2-D GEMM
(:func:`dense`). Mixed precision follows audiocraft's autocast: the residual stream ``x`` stays
float32, only the matmul inputs are cast to the compute dtype (:func:`dense`), LayerNorm runs in float32.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.model.attention import attention, resolve_impl
from magnet_jax.sharding import constrain
from magnet_jax.util import param


def trunc_normal(key, shape, std):
    return jax.random.truncated_normal(key, -3.0, 3.0, shape, jnp.float32) * std


def uniform_fan_in(key, shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def sinusoidal_positions(length: int, dim: int, max_period: float = 10000.0, offset=0) -> jnp.ndarray:
    """[T, dim] float32 for positions ``offset .. offset+T-1`` (``offset`` may be traced), audiocraft
    ``create_sin_embedding``: ``cat([cos, sin])`` (cos first) with phase ``t / max_period ** (i / (dim/2 - 1))``
    (note the ``- 1``)."""
    half = dim // 2
    pos = (jnp.arange(length, dtype=jnp.float32) + jnp.asarray(offset, jnp.float32))[:, None]
    adim = jnp.arange(half, dtype=jnp.float32)[None, :]
    phase = pos / (max_period ** (adim / (half - 1)))
    return jnp.concatenate([jnp.cos(phase), jnp.sin(phase)], axis=-1)


def rotary_frequencies(head_dim: int, max_period: float = 10000.0) -> np.ndarray:
    """float32 [head_dim / 2]: audiocraft ``RotaryEmbedding.frequencies``, ``max_period ** (-2i / head_dim)`` (its
    checkpoints store them as a buffer)."""
    adim = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    return (1.0 / (np.float32(max_period) ** adim)).astype(np.float32)


def rotary(x, positions, max_period: float = 10000.0, scale: float = 1.0):
    """audiocraft ``RotaryEmbedding.rotate`` (no xPos): the pairs ``(x[2i], x[2i+1])`` of the last dim of
    ``x [B, T, H, Dh]`` as complex numbers times ``exp(1j t f_i) * scale + (1 - scale)`` with ``f_i =
    max_period ** (-2i / Dh)`` at ``positions [T]`` (may be traced); float32 arithmetic, ``x``'s dtype out."""
    D = x.shape[-1]
    angles = jnp.asarray(positions, jnp.float32)[:, None] * rotary_frequencies(D, max_period)[None, :]  # [T, D/2]
    re = (jnp.cos(angles) * scale + (1.0 - scale))[None, :, None, :]
    im = (jnp.sin(angles) * scale)[None, :, None, :]
    pairs = x.astype(jnp.float32).reshape(x.shape[:-1] + (D // 2, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return jnp.stack([a * re - b * im, a * im + b * re], axis=-1).reshape(x.shape).astype(x.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm with affine scale / bias, statistics in float32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        self.scale = param(jnp.ones((dim,), jnp.float32), ("norm",))
        self.bias = param(jnp.zeros((dim,), jnp.float32), ("norm",))
        self.eps = eps

    def __call__(self, x):
        dtype = x.dtype
        x = x.astype(jnp.float32)
        mean = x.mean(-1, keepdims=True)
        var = jnp.square(x - mean).mean(-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...] + self.bias[...]).astype(dtype)


def dense(x, kernel, dtype, out_dtype=None):
    """``x [..., in] @ kernel [in, *out] -> [..., *out]`` as one 2-D GEMM with both inputs in ``dtype``;
    the result is in ``dtype`` (accumulated in ``out_dtype`` and returned in it when given, e.g. the
    float32 logits). Flattening the leading dims matters: XLA:CPU lowers the kernel gradient of a
    ``[B, T, in]`` contraction (over b and t) to a slow loop, but a 2-D one to a fast GEMM (about 1.7x
    for the FFN's forward + backward)."""
    k = kernel.astype(dtype)
    out = k.shape[1:]
    y = jnp.dot(x.reshape(-1, x.shape[-1]).astype(dtype), k.reshape(k.shape[0], -1),
                preferred_element_type=out_dtype)
    return y.reshape(x.shape[:-1] + out)


def plus_lora(y, module, name: str, x, dtype):
    """``y`` (a projection of ``x [..., in]``) plus the low-rank term ``scale (x @ a) @ b`` of the LoRA adapter
    that :func:`magnet_jax.model.lora.attach` put on ``module`` as ``lora_<name>`` (training with adapters);
    ``y`` itself when there is none."""
    ad = getattr(module, "lora_" + name, None)
    if ad is None:
        return y
    a = ad.a[...]
    h = dense(x, a.reshape(-1, a.shape[-1]), dtype) * jnp.asarray(ad.scale, dtype)
    return y + dense(h, ad.b[...], dtype).reshape(y.shape)


class SelfAttention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs, attention_impl: str = "xla"):
        hd = dim // heads
        resolve_impl(attention_impl)          # refuse an implementation this backend cannot run, up front
        self.attention_impl = attention_impl  # resolved at trace time (``auto`` follows the backend)
        # PyTorch keeps the default U(±1/sqrt(fan_in)) for the packed in_proj (not re-initialised).
        self.qkv = param(uniform_fan_in(rngs.params(), (dim, 3, heads, hd), dim), ("embed", "qkv", "heads", "head_dim"))
        self.out = param(jnp.zeros((heads, hd, dim), jnp.float32), ("heads", "head_dim", "embed"))

    def project(self, x, dtype):
        """q, k, v [B, T, H, Dh] in the compute dtype."""
        qkv = dense(x, self.qkv[...], dtype)                                  # [B, T, 3, H, Dh]
        q, k, v = (plus_lora(qkv[:, :, i], self, n, x, dtype) for i, n in enumerate("qkv"))
        return constrain(q, ("batch", "length", "heads", "head_dim")), k, v

    def output(self, o, dtype):
        o = o.reshape(o.shape[:2] + (-1,))
        return plus_lora(dense(o, self.out[...].reshape(-1, self.out.shape[-1]), dtype), self, "out", o, dtype)

    def attend(self, q, k, v, mask):
        """Attention (``mask``: None, a BandMask or a dense bool mask) with this layer's implementation."""
        return attention(q, k, v, mask, resolve_impl(self.attention_impl))

    def __call__(self, x, mask, dtype):
        q, k, v = self.project(x, dtype)
        return self.output(self.attend(q, k, v, mask), dtype)


class CrossAttention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs, attention_impl: str = "xla"):
        hd = dim // heads
        resolve_impl(attention_impl)
        self.attention_impl = attention_impl
        self.q = param(uniform_fan_in(rngs.params(), (dim, heads, hd), dim), ("embed", "heads", "head_dim"))
        self.kv = param(uniform_fan_in(rngs.params(), (dim, 2, heads, hd), dim), ("embed", "qkv", "heads", "head_dim"))
        self.out = param(jnp.zeros((heads, hd, dim), jnp.float32), ("heads", "head_dim", "embed"))

    def keys_values(self, cond, dtype):
        """[B, S, 2, H, Dh]: the text's keys and values (constant over a decode: computed once)."""
        kv = dense(cond, self.kv[...], dtype)
        if hasattr(self, "lora_k") or hasattr(self, "lora_v"):
            kv = jnp.stack([plus_lora(kv[:, :, i], self, n, cond, dtype) for i, n in enumerate("kv")], axis=2)
        return kv

    def attend(self, x, kv, key_mask, dtype):
        q = plus_lora(dense(x, self.q[...], dtype), self, "q", x, dtype)
        o = attention(q, kv[:, :, 0], kv[:, :, 1], key_mask, resolve_impl(self.attention_impl))
        o = o.reshape(o.shape[:2] + (-1,))
        return plus_lora(dense(o, self.out[...].reshape(-1, self.out.shape[-1]), dtype), self, "out", o, dtype)

    def __call__(self, x, cond, key_mask, dtype):
        return self.attend(x, self.keys_values(cond, dtype), key_mask, dtype)


@jax.custom_vjp
def gelu_erf(x):
    """Exact (erf) GELU, ``jax.nn.gelu(x, approximate=False)``, whose gradient keeps only ``x``.

    Autodiff of the erf form saves three intermediates besides ``x`` (the erf term, ``exp(-x^2 / 2)`` and a
    product), each the FFN's full [B, T, 4 D] width: under the scan over layers they are stacked per layer,
    ~190 MB of writes per training step at the benchmark shape (and the same again read back). The backward
    here recomputes ``Phi(x) + x phi(x)`` from ``x``, which costs less than reading them."""
    return jax.nn.gelu(x, approximate=False)


def _gelu_erf_fwd(x):
    return gelu_erf(x), x


def _gelu_erf_bwd(x, g):
    xf = x.astype(jnp.float32)
    cdf = 0.5 * (1.0 + jax.lax.erf(xf * (1.0 / math.sqrt(2.0))))
    pdf = jnp.exp(-0.5 * xf * xf) * (1.0 / math.sqrt(2.0 * math.pi))
    return ((cdf + xf * pdf) * g.astype(jnp.float32)).astype(g.dtype),


gelu_erf.defvjp(_gelu_erf_fwd, _gelu_erf_bwd)


class FeedForward(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.w1 = param(trunc_normal(rngs.params(), (dim, hidden), 1 / math.sqrt(dim)), ("embed", "mlp"))
        self.w2 = param(trunc_normal(rngs.params(), (hidden, dim), 1 / math.sqrt(hidden)), ("mlp", "embed"))

    def __call__(self, x, dtype):
        h = gelu_erf(plus_lora(dense(x, self.w1[...], dtype), self, "w1", x, dtype))   # exact erf GELU
        h = constrain(h, ("batch", "length", "mlp"))
        return plus_lora(dense(h, self.w2[...], dtype), self, "w2", h, dtype)


class TransformerLayer(nnx.Module):
    """One pre-norm layer (self-attention, cross-attention, FFN); ``x`` (the residual stream) stays float32."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float, *, rngs: nnx.Rngs, attention_impl: str = "xla",
                 rope: tuple[float, float] | None = None):
        self.rope = rope                  # (max_period, scale) of rotary self-attention positions, or None
        self.norm1 = LayerNorm(dim, eps)
        self.self_attn = SelfAttention(dim, heads, rngs=rngs, attention_impl=attention_impl)
        self.norm_cross = LayerNorm(dim, eps)
        self.cross_attn = CrossAttention(dim, heads, rngs=rngs, attention_impl=attention_impl)
        self.norm2 = LayerNorm(dim, eps)
        self.ffn = FeedForward(dim, hidden, rngs=rngs)
        o_std = 1 / math.sqrt(dim)
        self.self_attn.out[...] = trunc_normal(rngs.params(), self.self_attn.out.shape, o_std)
        self.cross_attn.out[...] = trunc_normal(rngs.params(), self.cross_attn.out.shape, o_std)

    def __call__(self, x, cond, self_mask, text_key_mask, dtype):
        """The full forward (training, full recompute): :meth:`step` with the text's keys / values projected here."""
        return self.step(x, self.cross_attn.keys_values(cond, dtype), text_key_mask, dtype, self_mask=self_mask)[0]

    def step(self, x, cross_kv, text_key_mask, dtype, *, self_mask=None, cache=None, pos=0, n_cond=None):
        """The layer's one body, for the forward and every decode step: ``x [N, T, D]`` (float32) at positions
        ``pos .. pos+T-1`` (``pos`` may be traced), the text's keys / values ``cross_kv [n_cond, S, 2, H, Dh]``
        given (:meth:`CrossAttention.keys_values`, once per generation: ``TransformerLM.cross_keys_values``).

        * self-attention under ``self_mask`` (None, a BandMask or a dense bool mask) to the layer's own keys /
          values, or with ``cache = (k, v)`` (static-size ``[N, Tmax, H, Dh]``) to the cache with the chunk's
          written in at ``pos``;
        * cross-attention for every row (``n_cond`` None), none (0), or, with ``n_cond = N / 2``, the even rows
          of CFG pairs (:mod:`magnet_jax.decoding.guidance`: row ``2i`` item ``i``'s conditional row, ``2i + 1``
          its null row): the null rows, whose zero condition has zero keys and values, skip it (it would add
          exactly 0). ``cross_kv`` then holds the ``n_cond`` conditional rows' keys / values.

        Returns ``(x, (k, v))``: the chunk's keys / values [N, T, H, Dh] for the caller to store (None without
        ``cache``)."""
        q, k, v = self.self_attn.project(self.norm1(x), dtype)
        if self.rope is not None:
            positions = pos + jnp.arange(x.shape[1])
            q, k = rotary(q, positions, *self.rope), rotary(k, positions, *self.rope)
        new = None
        if cache is not None:
            new = (k, v)
            k = jax.lax.dynamic_update_slice(cache[0], k.astype(cache[0].dtype), (0, pos, 0, 0))
            v = jax.lax.dynamic_update_slice(cache[1], v.astype(cache[1].dtype), (0, pos, 0, 0))
        x = x + self.self_attn.output(self.self_attn.attend(q, k, v, self_mask), dtype)
        if n_cond is None or n_cond == x.shape[0]:
            x = x + self.cross_attn.attend(self.norm_cross(x), cross_kv, text_key_mask, dtype)
        elif n_cond:
            if 2 * n_cond != x.shape[0]:
                raise ValueError(f"n_cond={n_cond} of {x.shape[0]} rows: the rows must be CFG pairs (n_cond = N / 2)")
            pairs = x.reshape((n_cond, 2) + x.shape[1:])
            c = pairs[:, 0]
            c = c + self.cross_attn.attend(self.norm_cross(c), cross_kv, text_key_mask, dtype)
            x = jnp.stack([c, pairs[:, 1]], 1).reshape(x.shape)
        x = x + self.ffn(self.norm2(x), dtype)
        return constrain(x, ("batch", "length", "act_embed")), new
