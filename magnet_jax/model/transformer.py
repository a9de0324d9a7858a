"""TransformerLM: the one transformer stack shared by MAGNeT and MusicGen (audiocraft ``LMModel``).

Forward::

    x     = sum_k emb_k[codes[:, k]] + sinusoid(positions)        # float32 residual stream ("sin"; "rope"
                                                                   # rotates q / k of the self-attention)
    cond  = (text_hidden @ W_text + b_text) * text_mask[..., None]
    x     = layers(x, cond, self_mask, text key mask)              # scanned (or looped) over layers
    logits_k = LN_out(x) @ W_k                                     # K bias-free heads, float32

Decoding (MAGNeT's ``logits_fn``, the rescorer, MusicGen's cached decode) runs the same layer body
(``TransformerLayer.step``) through :meth:`TransformerLM.step_layers`, with every layer's text keys / values
computed once per generation (:meth:`TransformerLM.cross_keys_values`).

Subclasses only choose the self-attention mask (MAGNeT: none / restricted band per stage; MusicGen:
causal) and their public call signature. Parameter names (``emb``, ``layers.*``, ``heads``, ...) are the
same for both, so conversion, sharding rules and checkpoints are shared.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from magnet_jax.model.attention_masks import text_key_mask
from magnet_jax.model.config import LMConfig
from magnet_jax.model.layers import (
    LayerNorm,
    TransformerLayer,
    dense,
    sinusoidal_positions,
    trunc_normal,
    uniform_fan_in,
)
from magnet_jax.sharding import constrain
from magnet_jax.util import param


class TransformerLM(nnx.Module):
    def __init__(self, config: LMConfig, *, rngs: nnx.Rngs | None = None):
        rngs = nnx.Rngs(0) if rngs is None else rngs
        c = self.config = config
        d = c.dim
        self.emb = param(trunc_normal(rngs.params(), (c.n_q, c.card + 1, d), 1 / math.sqrt(d)),
                         ("codebooks", "emb_vocab", "emb_embed"))
        self.text_kernel = param(uniform_fan_in(rngs.params(), (c.text_dim, d), c.text_dim), ("text_embed", "embed"))
        self.text_bias = param(uniform_fan_in(rngs.params(), (d,), c.text_dim), ("embed",))

        rope = (float(c.max_period), float(c.positional_scale)) if c.rotary else None

        @nnx.split_rngs(splits=c.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_layers(r):
            return TransformerLayer(d, c.num_heads, c.ffn_dim, c.layer_norm_eps, rngs=r,
                                    attention_impl=c.attention_impl, rope=rope)

        self.layers = make_layers(rngs)
        # audiocraft depthwise_init='current': layer i's out_proj / linear1 / linear2 std /= sqrt(2 (i+1))
        depth = 1.0 / jnp.sqrt(2.0 * (jnp.arange(c.num_layers, dtype=jnp.float32) + 1.0))
        for var in (self.layers.self_attn.out, self.layers.cross_attn.out, self.layers.ffn.w1, self.layers.ffn.w2):
            var[...] = var[...] * depth.reshape((-1,) + (1,) * (var.ndim - 1))
        self.out_norm = LayerNorm(d, c.layer_norm_eps)
        self.heads = param(trunc_normal(rngs.params(), (c.n_q, d, c.card), 1 / math.sqrt(d)),
                           ("codebooks", "embed", "vocab"))

    # ------------------------------------------------------------------ pieces
    @property
    def compute_dtype(self):
        return jnp.dtype(self.config.dtype)

    def project_text(self, text_hidden, text_mask):
        """Reference conditioner tail: ``output_proj(T5 hidden) * mask`` -> [B, S, dim] (compute dtype)."""
        dt = self.compute_dtype
        cond = dense(text_hidden, self.text_kernel[...], dt) + self.text_bias[...].astype(dt)
        return cond * text_mask[..., None].astype(dt)

    def text_key_mask(self, text_mask):
        """Cross-attention key mask (see :func:`attention_masks.text_key_mask`); None without a text mask
        (every key attends)."""
        return None if text_mask is None else text_key_mask(text_mask, self.config.mask_text_padding)

    def add_positions(self, x, offset=0):
        """``x [B, T, dim]`` + the input sinusoid at positions ``offset + t`` (times ``positional_scale``) when
        the model has one (``positional_embedding`` "sin" / "sin_rope"; "rope" rotates q / k in the layers)."""
        c = self.config
        if not c.input_sinusoid:
            return x
        return x + c.positional_scale * sinusoidal_positions(x.shape[1], c.dim, c.max_period, offset)[None]

    def embed_codes(self, codes, offset=0):
        """float32 [B, T, dim]: summed codebook embeddings (+ the input sinusoid, :meth:`add_positions`)."""
        c = self.config
        emb = self.emb[...]
        x = jnp.zeros(codes.shape[:1] + codes.shape[2:] + (c.dim,), jnp.float32)
        for k in range(c.n_q):  # K gathers summed; K is tiny and static
            x = x + jnp.take(emb[k], codes[:, k], axis=0)
        return self.add_positions(x, offset)

    def check_codes(self, codes):
        c = self.config
        codes = jnp.asarray(codes, jnp.int32)
        if codes.ndim != 3 or codes.shape[1] != c.n_q:
            raise ValueError(f"codes must be int [B, K={c.n_q}, T], got shape {codes.shape}")
        return codes

    def check_text(self, text_hidden, text_mask):
        c = self.config
        if text_hidden.ndim != 3 or text_hidden.shape[-1] != c.text_dim:
            raise ValueError(f"text_hidden must be float [B, S, E={c.text_dim}], got shape {text_hidden.shape}")
        if text_mask.shape != text_hidden.shape[:2]:
            raise ValueError(f"text_mask shape {text_mask.shape} does not match text_hidden {text_hidden.shape[:2]}")

    def run_layers(self, x, cond, self_mask, key_mask):
        """The layer stack (:func:`over_layers`) on a float32 residual stream ``x [B, T, dim]``; returns the
        final-normed hidden."""
        c = self.config
        dt = self.compute_dtype
        x = constrain(x, ("batch", "length", "act_embed"))

        def body(x, layer):
            return layer(x, cond, self_mask, key_mask, dt)

        if c.remat:
            body = nnx.remat(body, policy=jax.checkpoint_policies.nothing_saveable)
        return self.out_norm(over_layers(body, x, self.layers, config=c))

    def cross_keys_values(self, cond):
        """[layers, N, S, 2, H, Dh]: every layer's cross-attention keys / values of the projected text ``cond``
        [N, S, dim], as one GEMM (constant over a decode: computed once per generation)."""
        kv = jnp.moveaxis(self.layers.cross_attn.kv[...], 0, 1)               # [D, L, 2, H, Dh]
        return jnp.moveaxis(dense(cond, kv, self.compute_dtype), 2, 0)

    def step_layers(self, x, cross_kv, key_mask, *, self_mask=None, cache=None, pos=0, n_cond=None):
        """The layer stack of a decoding step (:meth:`TransformerLayer.step` per layer) on a float32 residual
        stream ``x [N, T, dim]`` with the text's keys / values precomputed (:meth:`cross_keys_values`; None: no
        row cross-attends) for every row (``n_cond`` None) or the ``n_cond = N / 2`` even rows of CFG pairs
        (:meth:`TransformerLayer.step`). ``cache``: ``{"k", "v"}`` [layers, N, Tmax,
        H, Dh] (:meth:`MusicGenLM.init_cache`), the chunk at cache positions ``pos ..``. Returns the final-normed
        hidden and, with a cache, the chunk's stacked keys / values ``(k, v)`` [layers, N, T, H, Dh] (else None)."""
        c = self.config
        dt = self.compute_dtype
        if cross_kv is None:
            cross_kv, n_cond = jnp.zeros((c.num_layers, 0), dt), 0           # scanned over, never read
        x = constrain(x, ("batch", "length", "act_embed"))

        def body(x, layer, ckv, *kv):
            x, new = layer.step(x, ckv, key_mask, dt, self_mask=self_mask, cache=kv or None, pos=pos, n_cond=n_cond)
            return x if cache is None else (x, new)

        if cache is None:
            return self.out_norm(over_layers(body, x, self.layers, cross_kv, config=c)), None
        x, kv = over_layers(body, x, self.layers, cross_kv, cache["k"], cache["v"], config=c, stacked_out=True)
        return self.out_norm(x), kv

    def heads_dkc(self):
        """The output heads as [D, K, card] (one GEMM for every codebook). A decoding loop computes it once
        and hands it to :meth:`all_logits`: inside the loop XLA would redo the transpose on every step."""
        return jnp.transpose(self.heads[...], (1, 0, 2))

    def all_logits(self, h, heads_dkc=None):
        """float32 [B, K, T, card] from the final hidden [B, T, dim] (``heads_dkc``: :meth:`heads_dkc`)."""
        heads = self.heads_dkc() if heads_dkc is None else heads_dkc          # [D, K, card]
        logits = jnp.transpose(dense(h, heads, self.compute_dtype, jnp.float32), (0, 2, 1, 3))
        return constrain(logits, ("batch", "codebooks", "length", "vocab"))


def over_layers(body, x, layers, *xs, config: LMConfig, stacked_out: bool = False):
    """``x = body(x, layer_i, *xs_i)`` for each layer of the stacked ``layers`` (leading ``layers`` axis on every
    parameter and on each of ``xs``); with ``stacked_out`` ``body`` returns ``(x, y)`` and the ``y`` come back
    stacked. ``config.scan_layers``: one ``nnx.scan`` (compiled once, whatever the depth; ``scan_unroll``), or a
    Python loop over static per-layer slices, which XLA compiles per layer but runs without the scan's per-step
    dynamic-slices of the weights, stacked residuals and, inside a decoding loop, with the weight slices
    hoisted out of it (docs/performance_notes.md, benchmarks)."""
    if config.scan_layers:
        scan = nnx.scan(body, in_axes=(nnx.Carry,) + (0,) * (1 + len(xs)),
                        out_axes=(nnx.Carry, 0) if stacked_out else nnx.Carry, unroll=config.scan_unroll,
                        transform_metadata={nnx.PARTITION_NAME: "layers"})
        return scan(x, layers, *xs)
    n = config.num_layers

    def unstack(a):
        """The n per-layer slices of ``a``. jnp.split, not a[i]: its transpose is one concatenate of the
        per-layer gradients (a[i]'s is n pads + adds)."""
        return [q[0] for q in jnp.split(a, n, axis=0)]

    def pick(tree, i):
        """Layer i's slice of every leaf of an unstacked tree (leaves: lists of slices)."""
        return jax.tree.map(lambda slices: slices[i], tree, is_leaf=lambda v: isinstance(v, list))

    gdef, state = nnx.split(layers)
    per_param = jax.tree.map(unstack, state)
    per_xs = [jax.tree.map(unstack, t) for t in xs]
    ys = []
    for i in range(n):
        out = body(x, nnx.merge(gdef, pick(per_param, i)), *(pick(t, i) for t in per_xs))
        if stacked_out:
            x, y = out
            ys.append(y)
        else:
            x = out
    if not stacked_out:
        return x
    return x, jax.tree.map(lambda *a: jnp.stack(a), *ys)


def num_params(model: nnx.Module) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
