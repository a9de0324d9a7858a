"""MagnetLM: the MAGNeT LM over K parallel EnCodec codebooks (audiocraft MagnetLMModel).

The shared :class:`~magnet_jax.model.transformer.TransformerLM` with MAGNeT's self-attention mask:
full attention for stage 0, the restricted-context band for stages > 0 (identical to audiocraft 1.3.0
with the xformers backend the released checkpoints use).

Public API (stable)::

    lm(codes int32 [B, K, T], text_hidden [B, S, E], text_mask [B, S], stage=s) -> float32 [B, K, T, card]
    lm.stage_logits(...)  -> float32 [B, T, card]     # only the head of codebook ``stage`` (cheaper)

``stage`` may be a Python int or a traced int32 scalar.
"""
from __future__ import annotations

import jax.numpy as jnp

from magnet_jax.model import attention_masks
from magnet_jax.model.config import MagnetConfig
from magnet_jax.model.layers import dense
from magnet_jax.model.transformer import TransformerLM, num_params
from magnet_jax.sharding import constrain

__all__ = ["MagnetLM", "num_params"]


class MagnetLM(TransformerLM):
    config: MagnetConfig

    def hidden(self, codes, cond, stage, text_mask=None):
        """Final-normed hidden states [B, T, dim] (float32) from codes and an already projected ``cond``."""
        codes = self.check_codes(codes)
        self_mask = attention_masks.stage_self_attention_mask(codes.shape[-1], stage, self.config.subcodes_context)
        return self.run_layers(self.embed_codes(codes), cond, self_mask, self.text_key_mask(text_mask))

    def __call__(self, codes, text_hidden, text_mask, stage=0):
        """Logits float32 [B, K, T, card] for every codebook."""
        self.check_text(text_hidden, text_mask)
        return self.all_logits(self.hidden(codes, self.project_text(text_hidden, text_mask), stage, text_mask))

    def stage_logits(self, codes, text_hidden, text_mask, stage, *, cond=None):
        """Logits float32 [B, T, card] of codebook ``stage`` only (decoding / training use this).

        ``stage``: Python int, traced int scalar, or int [B] (a stage per sample).

        ``cond`` may pass an already projected text (see :meth:`project_text`) to skip the projection;
        ``text_mask`` (if given) then still sets the cross-attention key mask.
        """
        if cond is None:
            self.check_text(text_hidden, text_mask)
            cond = self.project_text(text_hidden, text_mask)
        h = self.hidden(codes, cond, stage, text_mask)
        dt = self.compute_dtype
        w = self.heads[...][stage] if isinstance(stage, int) else jnp.take(self.heads[...], stage, axis=0)
        if w.ndim == 3:   # a stage per sample: [B, D, card]
            logits = jnp.einsum("btd,bdv->btv", h.astype(dt), w.astype(dt), preferred_element_type=jnp.float32)
        else:
            logits = dense(h, w, dt, jnp.float32)
        return constrain(logits, ("batch", "length", "vocab"))
