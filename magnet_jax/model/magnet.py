"""MagnetLM: the MAGNeT transformer LM over K parallel EnCodec codebooks (audiocraft MagnetLMModel).

Forward (identical to audiocraft 1.3.0 with the xformers backend the released checkpoints use)::

    x     = sum_k emb_k[codes[:, k]]                  # K tables of card+1 rows (mask id = card)
    x    += sinusoid(T)                               # cos first, dim/2 - 1 denominator
    cond  = (text_hidden @ W_text + b_text) * text_mask[..., None]
    x     = layers(x, cond, band mask if stage > 0)   # scanned over layers
    logits_k = LN_out(x) @ W_k                        # K bias-free heads

Public API (stable)::

    lm(codes int32 [B, K, T], text_hidden [B, S, E], text_mask [B, S], stage=s) -> float32 [B, K, T, card]
    lm.stage_logits(...)  -> float32 [B, T, card]     # only the head of codebook ``stage`` (cheaper)

``stage`` may be a Python int or a traced int32 scalar.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from magnet_jax.model import masks
from magnet_jax.model.config import MagnetConfig
from magnet_jax.model.layers import LayerNorm, TransformerLayer, dense, param, sinusoidal_positions, trunc_normal, \
    uniform_fan_in
from magnet_jax.sharding import constrain


class MagnetLM(nnx.Module):
    def __init__(self, config: MagnetConfig, *, rngs: nnx.Rngs | None = None):
        rngs = nnx.Rngs(0) if rngs is None else rngs
        c = self.config = config
        d = c.dim
        self.emb = param(trunc_normal(rngs.params(), (c.n_q, c.card + 1, d), 1 / math.sqrt(d)),
                         ("codebooks", "emb_vocab", "emb_embed"))
        self.text_kernel = param(uniform_fan_in(rngs.params(), (c.text_dim, d), c.text_dim), ("text_embed", "embed"))
        self.text_bias = param(uniform_fan_in(rngs.params(), (d,), c.text_dim), ("embed",))

        @nnx.split_rngs(splits=c.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_layers(r):
            return TransformerLayer(d, c.num_heads, c.ffn_dim, c.layer_norm_eps, rngs=r)

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
        """Reference conditioner tail: ``output_proj(T5 hidden) * mask`` -> [B, S, dim]."""
        dt = self.compute_dtype
        cond = dense(text_hidden.astype(dt), self.text_kernel[...], dt) + self.text_bias[...].astype(dt)
        return cond * text_mask[..., None].astype(dt)

    def embed_codes(self, codes):
        c = self.config
        emb = self.emb[...]
        x = jnp.zeros(codes.shape[:1] + codes.shape[2:] + (c.dim,), jnp.float32)
        for k in range(c.n_q):  # K gathers summed; K is tiny and static
            x = x + jnp.take(emb[k], codes[:, k], axis=0)
        x = x + sinusoidal_positions(codes.shape[-1], c.dim, c.max_period)[None]
        return x.astype(self.compute_dtype)

    def hidden(self, codes, cond, stage, text_mask=None):
        """Final-normed hidden states [B, T, dim] from codes and an already projected ``cond``."""
        c = self.config
        codes = jnp.asarray(codes, jnp.int32)
        if codes.ndim != 3 or codes.shape[1] != c.n_q:
            raise ValueError(f"codes must be int [B, K={c.n_q}, T], got shape {codes.shape}")
        dt = self.compute_dtype
        x = constrain(self.embed_codes(codes), ("batch", "length", "act_embed"))
        T = codes.shape[-1]
        self_mask = masks.stage_self_attention_mask(T, stage, c.subcodes_context)
        key_mask = masks.text_key_mask(text_mask) if (c.mask_text_padding and text_mask is not None) else None

        def body(x, layer):
            return layer(x, cond, self_mask, key_mask, dt)

        if c.remat:
            body = nnx.remat(body, policy=jax.checkpoint_policies.nothing_saveable)
        scan = nnx.scan(body, in_axes=(nnx.Carry, 0), out_axes=nnx.Carry, unroll=c.scan_unroll,
                        transform_metadata={nnx.PARTITION_NAME: "layers"})
        x = scan(x, self.layers)
        return self.out_norm(x)

    def _check_text(self, text_hidden, text_mask):
        c = self.config
        if text_hidden.ndim != 3 or text_hidden.shape[-1] != c.text_dim:
            raise ValueError(f"text_hidden must be float [B, S, E={c.text_dim}], got shape {text_hidden.shape}")
        if text_mask.shape != text_hidden.shape[:2]:
            raise ValueError(f"text_mask shape {text_mask.shape} does not match text_hidden {text_hidden.shape[:2]}")

    # ------------------------------------------------------------------ public
    def __call__(self, codes, text_hidden, text_mask, stage=0):
        """Logits float32 [B, K, T, card] for every codebook."""
        self._check_text(text_hidden, text_mask)
        h = self.hidden(codes, self.project_text(text_hidden, text_mask), stage, text_mask)
        dt = self.compute_dtype
        heads = jnp.transpose(self.heads[...], (1, 0, 2))                    # [D, K, card]
        logits = jnp.transpose(dense(h, heads, dt), (0, 2, 1, 3)).astype(jnp.float32)
        return constrain(logits, ("batch", "codebooks", "length", "vocab"))

    def stage_logits(self, codes, text_hidden, text_mask, stage, *, cond=None):
        """Logits float32 [B, T, card] of codebook ``stage`` only (decoding / training use this).

        ``stage``: Python int, traced int scalar, or int [B] (a stage per sample).

        ``cond`` may pass an already projected text (see :meth:`project_text`) to skip the projection.
        """
        if cond is None:
            self._check_text(text_hidden, text_mask)
            cond = self.project_text(text_hidden, text_mask)
        h = self.hidden(codes, cond, stage, text_mask)
        w = self.heads[...][stage] if isinstance(stage, int) else jnp.take(self.heads[...], stage, axis=0)
        if w.ndim == 3:   # a stage per sample: [B, D, card]
            logits = jnp.einsum("btd,bdv->btv", h, w.astype(self.compute_dtype), preferred_element_type=jnp.float32)
        else:
            logits = dense(h, w, self.compute_dtype).astype(jnp.float32)
        return constrain(logits, ("batch", "length", "vocab"))


def num_params(model: nnx.Module) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
