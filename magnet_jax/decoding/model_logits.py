"""The MAGNeT LM as the decoding loop's ``logits_fn``, with classifier-free guidance.

Each step runs the stack once on the ``2B`` batch of CFG pairs (:mod:`magnet_jax.decoding.guidance`: row ``2i`` item
``i``'s conditional row, ``2i + 1`` its null row) and returns ``uncond + (cond - uncond) * coef`` for the active
stage only (one head of K). What does not change over a decode is computed once per generate, not once per step:
the text projection and every layer's text keys / values (``TransformerLM.cross_keys_values``). The null rows skip
the cross-attention exactly (``TransformerLayer.step``'s ``n_cond``): audiocraft's null condition is
``proj(hidden) * 0 = 0``, so their keys and values are zero (bias-free projections) and the cross-attention adds
exactly 0 to them.

tests/integration/test_decoding_model_logits.py checks it against ``MagnetLM.stage_logits`` on the full batch.
"""
from __future__ import annotations

import jax.numpy as jnp

from magnet_jax.decoding import guidance
from magnet_jax.decoding._module import rebuilder
from magnet_jax.decoding.loop import LogitsFn
from magnet_jax.model.attention_masks import stage_self_attention_mask
from magnet_jax.model.layers import dense
from magnet_jax.sharding import constrain


def _stage_logits(lm, codes, stage: int, cross_kv, key_mask, n_cond: int):
    """float32 [N, T, card]: the active stage's head on ``codes`` [N, K, T]; ``n_cond = N / 2``: the rows are CFG
    pairs, the odd (null) rows have a zero condition; ``cross_kv`` None: no row has text."""
    codes = lm.check_codes(codes)
    self_mask = stage_self_attention_mask(codes.shape[-1], stage, lm.config.subcodes_context)
    h, _ = lm.step_layers(lm.embed_codes(codes), cross_kv, key_mask, self_mask=self_mask, n_cond=n_cond)
    logits = dense(h, lm.heads[...][stage], lm.compute_dtype, jnp.float32)   # the active stage's head only
    return constrain(logits, ("batch", "length", "vocab"))


def cfg_logits_fn(graphdef, state, text_hidden, text_mask) -> LogitsFn:
    """``logits_fn`` of a :class:`~magnet_jax.model.MagnetLM` (``nnx.split``) with classifier-free guidance.

    The null rows are (zero condition, zero text mask) of the same text length ``S``: the condition tensors
    are identical to the reference's (there the batch is ``[cond; null]``; here the rows are pairs).
    Without text (``text_hidden=None``): the ``B`` null rows only. The module is rebuilt inside each call
    (:func:`~magnet_jax.decoding._module.rebuilder`).
    """
    model = rebuilder(graphdef, state)
    if text_hidden is None:
        def null_only(codes, stage, coef):
            del coef
            return _stage_logits(model(), codes, stage, None, None, 0)
        return null_only

    lm = model()
    cross_kv = lm.cross_keys_values(lm.project_text(text_hidden, text_mask))    # once per generate
    key_mask = lm.text_key_mask(text_mask)        # the null rows' zero masks do not change the cond rows' mask

    def guided(codes, stage, coef):
        both = _stage_logits(model(), guidance.pairs(codes), stage, cross_kv, key_mask, codes.shape[0])
        return guidance.guide(both, coef)

    return guided
