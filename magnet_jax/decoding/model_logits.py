"""The MAGNeT LM as the decoding loop's ``logits_fn``, with classifier-free guidance.

Each step runs the stack once on the ``2B`` batch ``[cond; null]`` and returns
``uncond + (cond - uncond) * coef`` for the active stage only (one head of K). What does not change over a
decode is computed once per generate, not once per step: the text projection and every layer's text keys /
values. The null rows skip the cross-attention exactly: audiocraft's null condition is ``proj(hidden) * 0 = 0``,
so their keys and values are zero (bias-free projections) and the cross-attention adds exactly 0 to them.

The per-layer step mirrors ``TransformerLayer.__call__`` (pre-norm self-attention, cross-attention, FFN);
tests/unit/test_decoding_model_logits.py checks it against ``MagnetLM.stage_logits`` on the full batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from magnet_jax.decoding.loop import LogitsFn
from magnet_jax.model.attention_masks import stage_self_attention_mask
from magnet_jax.model.layers import dense
from magnet_jax.model.transformer import over_layers
from magnet_jax.sharding import constrain


def text_keys_values(lm, cond):
    """[layers, B, S, 2, H, Dh]: every layer's cross-attention keys / values of the projected text ``cond``
    (one GEMM per layer, as ``CrossAttention.keys_values``)."""
    kv = lm.layers.cross_attn.kv[...]                                        # [L, D, 2, H, Dh]
    return jnp.stack([dense(cond, kv[i], lm.compute_dtype) for i in range(kv.shape[0])])


def _stage_hidden(lm, codes, stage: int, cross_kv, key_mask, n_cond: int):
    """Final-normed hidden [N, T, dim] of ``codes`` [N, K, T]; rows ``>= n_cond`` have a zero condition."""
    c = lm.config
    dt = lm.compute_dtype
    codes = lm.check_codes(codes)
    self_mask = stage_self_attention_mask(codes.shape[-1], stage, c.subcodes_context)
    x = constrain(lm.embed_codes(codes), ("batch", "length", "act_embed"))

    def body(x, layer, ckv):
        x = x + layer.self_attn(layer.norm1(x), self_mask, dt)
        if n_cond:
            h = layer.cross_attn.attend(layer.norm_cross(x[:n_cond]), ckv, key_mask, dt)
            x = jnp.concatenate([x[:n_cond] + h, x[n_cond:]], 0)
        x = x + layer.ffn(layer.norm2(x), dt)
        return constrain(x, ("batch", "length", "act_embed"))

    return lm.out_norm(over_layers(body, x, lm.layers, cross_kv, config=c))


def _head(lm, h, stage: int):
    logits = dense(h, lm.heads[...][stage], lm.compute_dtype, jnp.float32)   # the active stage's head only
    return constrain(logits, ("batch", "length", "vocab"))


def cfg_logits_fn(graphdef, state, text_hidden, text_mask) -> LogitsFn:
    """``logits_fn`` of a :class:`~magnet_jax.model.MagnetLM` (``nnx.split``) with classifier-free guidance.

    The null rows are (zero condition, zero text mask) of the same text length ``S``: the condition tensors
    are identical to the reference's. Without text (``text_hidden=None``): the ``B`` null rows only.
    The module is rebuilt inside each call from the state's leaves: NNX transforms in the model (the layer
    scan) refuse variables created at an outer trace level (the loop body is a trace of its own).
    """
    lm = nnx.merge(graphdef, state)
    leaves, treedef = jax.tree.flatten(state)

    def model():
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))

    L = lm.config.num_layers
    if text_hidden is None:
        no_kv = jnp.zeros((L, 0), lm.compute_dtype)                         # scanned over, never read

        def null_only(codes, stage, coef):
            del coef
            m = model()
            return _head(m, _stage_hidden(m, codes, stage, no_kv, None, 0), stage)
        return null_only

    cross_kv = text_keys_values(lm, lm.project_text(text_hidden, text_mask))    # once per generate
    key_mask = lm.text_key_mask(text_mask)        # the null rows' zero masks do not change the cond rows' mask

    def guided(codes, stage, coef):
        B = codes.shape[0]
        m = model()
        both = _head(m, _stage_hidden(m, jnp.concatenate([codes, codes], 0), stage, cross_kv, key_mask, B), stage)
        cond_l, uncond_l = both[:B], both[B:]
        return uncond_l + (cond_l - uncond_l) * coef

    return guided
