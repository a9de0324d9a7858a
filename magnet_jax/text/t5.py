"""The T5 encoder stack in Flax NNX (weights from a Hugging Face checkpoint: :mod:`magnet_jax.convert.t5`).

MAGNeT conditions on the last hidden state of a frozen T5 encoder (``t5-base``, 768-dim, for music;
``t5-large``, 1024-dim, for audio). This module re-implements that encoder so it runs in JAX and
matches transformers' ``T5EncoderModel`` numerically (max |diff| ~1e-6 in float32).

Architecture (pre-norm, no biases anywhere, dropout ignored since the encoder is frozen)::

    h = embed_tokens[input_ids]                       # no embedding scaling
    bias = rel_bias[bucket(k - q)]                    # [H, S, S], computed once, shared by all layers
    for each layer:
        h = h + O(softmax(Q K^T + bias + mask) V)     # Q, K, V from RMSNorm(h); no 1/sqrt(d) scaling
        h = h + Wo(act(Wi RMSNorm(h)))                # or Wo(act(Wi_0 x) * Wi_1 x) for "gated-*"
    out = RMSNorm(h)

* ``RMSNorm`` is ``T5LayerNorm``: no mean subtraction, no bias, mean of squares in float32.
* The relative-position buckets are the bidirectional Mesh-TensorFlow buckets: half the buckets for
  each direction, exact below ``num_buckets // 4``, logarithmic up to ``max_distance``. They are
  computed with NumPy at trace time (shapes are static) in float32, the same operation order as
  transformers, so every bucket boundary is the same.
* Masking follows transformers exactly: a masked key gets the most negative float32 logit. A row
  whose mask is all zero (a null / empty text in the reference conditioner) therefore ends up with a
  *uniform* softmax over all S keys, and gives finite, non-zero hidden states - just as in PyTorch.
  Zeroing such rows is the job of the consumer (MAGNeT multiplies the projected states by the mask).
* The feed-forward follows the config's ``feed_forward_proj``: ``"relu"`` (original T5,
  ``DenseReluDense``) or ``"gated-gelu"`` (T5 v1.1 / flan-T5; ``gelu_new``, the tanh approximation),
  and more generally ``"[gated-]ACT"`` for ACT in relu, gelu, gelu_new, gelu_pytorch_tanh, silu, swish.

Layers are stored stacked (leading ``layers`` axis) and run with ``jax.lax.scan``, so compilation
time does not grow with depth. With ``dtype=jnp.bfloat16`` the matmuls run in bfloat16 while the
residual stream, norms, softmax and the output projection of the feed-forward (``wo``, which
transformers also keeps in float32 for T5) stay in float32; the output is always float32.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.util.params import param  # T5 is small and frozen: replicated (no axis names)

__all__ = ["T5EncoderConfig", "T5Encoder", "T5EncoderFn", "relative_position_buckets"]

_ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


# ---------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class T5EncoderConfig:
    """The encoder half of a Hugging Face ``T5Config`` (same field names and defaults)."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"

    def __post_init__(self):
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"feed_forward_proj must be 'ACT' or 'gated-ACT', got {self.feed_forward_proj!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"unsupported T5 activation {self.activation!r} "
                             f"(supported: {sorted(_ACTIVATIONS)})")

    @property
    def is_gated(self) -> bool:
        """True for T5 v1.1-style ``gated-*`` feed-forwards (``wi_0``, ``wi_1``, ``wo``)."""
        return self.feed_forward_proj.split("-")[0] == "gated"

    @property
    def activation(self) -> str:
        """The transformers activation name; ``gated-gelu`` means ``gelu_new`` as in ``T5Config``."""
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    @classmethod
    def from_hf_dict(cls, cfg: Mapping[str, Any]) -> "T5EncoderConfig":
        """From a ``config.json`` dict; missing keys take ``T5Config``'s defaults."""
        kw = {f.name: cfg[f.name] for f in dataclasses.fields(cls) if cfg.get(f.name) is not None}
        return cls(**kw)


# ---------------------------------------------------------------------------------------- buckets
def relative_position_buckets(query_length: int, key_length: int, num_buckets: int = 32,
                              max_distance: int = 128) -> np.ndarray:
    """Bidirectional T5 relative-position bucket of every (query, key) pair: int32 [Sq, Sk].

    The relative position is ``key - query``. Half of the buckets are for keys to the right
    (positive positions). Within each half, distances below ``num_buckets // 4`` get their own
    bucket and larger ones share log-spaced buckets; distances >= ``max_distance`` all fall into
    the last bucket. Computed in float32 with the same operation order as transformers.
    """
    rel = np.arange(key_length, dtype=np.int64)[None, :] - np.arange(query_length, dtype=np.int64)[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).astype(np.int64) * half
    dist = np.abs(rel)
    max_exact = half // 2
    is_small = dist < max_exact
    with np.errstate(divide="ignore"):
        log_ratio = np.log(dist.astype(np.float32) / np.float32(max_exact))
        scaled = log_ratio / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = max_exact + np.where(is_small, 0.0, scaled).astype(np.int64)   # only used where not small
    large = np.minimum(large, half - 1)
    return (buckets + np.where(is_small, dist, large)).astype(np.int32)


# ---------------------------------------------------------------------------------------- model
def _rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """T5LayerNorm in float32: ``weight * x / sqrt(mean(x^2) + eps)``."""
    x = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return weight.astype(jnp.float32) * (x * jax.lax.rsqrt(var + eps))


class T5Encoder(nnx.Module):
    """T5 encoder stack: ``(input_ids [B, S], attention_mask [B, S]) -> hidden float32 [B, S, E]``.

    Parameters (torch ``nn.Linear`` weights are transposed to ``[in, out]``):

    ============================  ================  ==================================================
    ``embed_tokens``              ``[V, E]``        ``shared.weight`` / ``encoder.embed_tokens.weight``
    ``relative_attention_bias``   ``[buckets, H]``  ``block.0...SelfAttention.relative_attention_bias``
    ``attn_norm``                 ``[L, E]``        ``block.i.layer.0.layer_norm``
    ``q``, ``k``, ``v``           ``[L, E, H*Dk]``  ``block.i.layer.0.SelfAttention.{q,k,v}``
    ``o``                         ``[L, H*Dk, E]``  ``block.i.layer.0.SelfAttention.o``
    ``ffn_norm``                  ``[L, E]``        ``block.i.layer.1.layer_norm``
    ``wi`` or ``wi_0``, ``wi_1``  ``[L, E, F]``     ``block.i.layer.1.DenseReluDense.wi[_0|_1]``
    ``wo``                        ``[L, F, E]``     ``block.i.layer.1.DenseReluDense.wo`` (float32)
    ``final_norm``                ``[E]``           ``final_layer_norm``
    ============================  ================  ==================================================

    Args:
      config: the architecture.
      dtype: compute / storage dtype of the matmul weights (float32 or bfloat16); norms, the
        relative bias and ``wo`` are kept in float32.
      precision: matmul precision (default ``HIGHEST`` so that float32 really is float32 on TPU;
        the encoder runs once per batch of prompts, its cost is negligible).
      rngs: random init (normal, with transformers' ``T5PreTrainedModel`` scales) - only useful for
        tests; :func:`magnet_jax.convert.t5.load_t5_encoder` builds the module abstractly and fills
        in checkpoint weights.
    """

    def __init__(self, config: T5EncoderConfig, *, dtype=jnp.float32,
                 precision: jax.lax.Precision | str | None = jax.lax.Precision.HIGHEST,
                 rngs: nnx.Rngs):
        self.config = config
        self.dtype = jnp.dtype(dtype)
        self.precision = precision
        c, L, E, F, HD = config, config.num_layers, config.d_model, config.d_ff, config.inner_dim
        key = rngs.params

        def normal(shape, std, dt):
            return (jax.random.normal(key(), shape, jnp.float32) * std).astype(dt)

        self.embed_tokens = param(normal((c.vocab_size, E), 1.0, self.dtype))
        self.relative_attention_bias = param(normal((c.relative_attention_num_buckets, c.num_heads),
                                                     E ** -0.5, jnp.float32))
        self.attn_norm = param(jnp.ones((L, E), jnp.float32))
        self.q = param(normal((L, E, HD), (E * c.d_kv) ** -0.5, self.dtype))
        self.k = param(normal((L, E, HD), E ** -0.5, self.dtype))
        self.v = param(normal((L, E, HD), E ** -0.5, self.dtype))
        self.o = param(normal((L, HD, E), HD ** -0.5, self.dtype))
        self.ffn_norm = param(jnp.ones((L, E), jnp.float32))
        if c.is_gated:
            self.wi_0 = param(normal((L, E, F), E ** -0.5, self.dtype))
            self.wi_1 = param(normal((L, E, F), E ** -0.5, self.dtype))
        else:
            self.wi = param(normal((L, E, F), E ** -0.5, self.dtype))
        self.wo = param(normal((L, F, E), F ** -0.5, jnp.float32))
        self.final_norm = param(jnp.ones((E,), jnp.float32))

    # -- pieces ---------------------------------------------------------------------------------
    def position_bias(self, length: int) -> jax.Array:
        """float32 [H, S, S]: the learned bias of each head for each (query, key) pair."""
        c = self.config
        buckets = relative_position_buckets(length, length, c.relative_attention_num_buckets,
                                            c.relative_attention_max_distance)
        return jnp.transpose(self.relative_attention_bias[...][jnp.asarray(buckets)], (2, 0, 1))

    def _dot(self, x, w, out_dtype=None):
        w = w.astype(x.dtype) if w.dtype != x.dtype else w
        return jnp.matmul(x, w, precision=self.precision, preferred_element_type=out_dtype)

    def _layer(self, h, p, bias, key_mask):
        """One pre-norm T5 block on the float32 residual stream ``h`` [B, S, E]."""
        c, dt = self.config, self.dtype
        B, S, _ = h.shape
        x = _rms_norm(h, p["attn_norm"], c.layer_norm_epsilon).astype(dt)
        q = self._dot(x, p["q"]).reshape(B, S, c.num_heads, c.d_kv)
        k = self._dot(x, p["k"]).reshape(B, S, c.num_heads, c.d_kv)
        v = self._dot(x, p["v"]).reshape(B, S, c.num_heads, c.d_kv)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=self.precision,
                            preferred_element_type=jnp.float32)
        logits = logits + bias[None]
        # transformers adds finfo.min to masked keys; min + (anything finite) rounds to min, so a
        # where() gives bit-identical logits and the same uniform softmax for all-masked rows.
        logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
        w = jax.nn.softmax(logits, axis=-1).astype(dt)
        a = jnp.einsum("bhqk,bkhd->bqhd", w, v, precision=self.precision).reshape(B, S, c.inner_dim)
        h = h + self._dot(a, p["o"], jnp.float32).astype(jnp.float32)

        x = _rms_norm(h, p["ffn_norm"], c.layer_norm_epsilon).astype(dt)
        act = _ACTIVATIONS[c.activation]
        if c.is_gated:
            f = act(self._dot(x, p["wi_0"])) * self._dot(x, p["wi_1"])
        else:
            f = act(self._dot(x, p["wi"]))
        f = f.astype(jnp.float32)  # wo runs in float32 (transformers' _keep_in_fp32_modules = ["wo"])
        return h + self._dot(f, p["wo"].astype(jnp.float32))

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """Encode token ids.

        Args:
          input_ids: int [B, S] token ids.
          attention_mask: [B, S], non-zero = a real token (bool / int / float all accepted);
            None means no padding. An all-zero row is allowed (see the module docstring).
        Returns:
          float32 [B, S, E], the ``last_hidden_state`` (after the final RMSNorm).
        """
        c = self.config
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [B, S], got shape {input_ids.shape}")
        B, S = input_ids.shape
        key_mask = (jnp.ones((B, S), bool) if attention_mask is None
                    else jnp.asarray(attention_mask) != 0)
        if key_mask.shape != (B, S):
            raise ValueError(f"attention_mask shape {key_mask.shape} != input_ids shape {(B, S)}")
        h = jnp.take(self.embed_tokens[...], input_ids.astype(jnp.int32), axis=0).astype(jnp.float32)
        bias = self.position_bias(S)
        names = ["attn_norm", "q", "k", "v", "o", "ffn_norm", "wo"] + (
            ["wi_0", "wi_1"] if c.is_gated else ["wi"])
        stacked = {n: getattr(self, n)[...] for n in names}

        def step(h, p):
            return self._layer(h, p, bias, key_mask), None

        h, _ = jax.lax.scan(step, h, stacked)
        return _rms_norm(h, self.final_norm[...], c.layer_norm_epsilon)


class T5EncoderFn:
    """A loaded, frozen :class:`T5Encoder` with a jitted ``(input_ids, attention_mask) -> hidden``.

    The parameters are passed to the compiled function as arguments (not baked in as constants),
    so one compilation per distinct ``(B, S)`` is cheap. ``.module`` is the underlying NNX module,
    for use inside a caller's own ``nnx.jit`` program; ``.config`` its architecture.
    """

    def __init__(self, module: T5Encoder):
        self.module = module
        self.config = module.config
        self._graphdef, self._state = nnx.split(module)
        graphdef = self._graphdef

        @jax.jit
        def run(state, input_ids, attention_mask):
            return nnx.merge(graphdef, state)(input_ids, attention_mask)

        self._run = run

    @property
    def dim(self) -> int:
        """Width ``E`` of the hidden states."""
        return self.config.d_model

    def __call__(self, input_ids, attention_mask=None) -> jax.Array:
        input_ids = jnp.asarray(input_ids, jnp.int32)
        if attention_mask is None:
            attention_mask = jnp.ones(input_ids.shape, jnp.int32)
        return self._run(self._state, input_ids, jnp.asarray(attention_mask))
