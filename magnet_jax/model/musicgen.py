"""MusicGenLM: the autoregressive sibling (audiocraft ``LMModel``, ``lm_model: transformer_lm``).

The shared :class:`~magnet_jax.model.transformer.TransformerLM` with a causal self-attention mask, run
on the *delayed* sequence (codebook k shifted right by ``delays[k]`` steps, one leading special step; see
:mod:`magnet_jax.model.delay_pattern`). Position s predicts sequence step s + 1 of every codebook.

Public API (stable)::

    lm(sequence int32 [B, K, S], text_hidden [B, S_txt, E], text_mask [B, S_txt]) -> float32 [B, K, S, card]
    cache = lm.init_cache(batch, length)               # static-size KV cache (compute dtype)
    cross_kv = lm.cross_keys_values(cond)              # every layer's text keys / values, once per decode
    logits, cache = lm.decode(chunk [B, K, Tq], pos, cache, cross_kv, key_mask)   # incremental, pos traced

A ``prefix`` [B, P, dim] (MusicGen-melody's prepended conditions, audiocraft's fuser ``prepend``) takes
positions 0..P-1 ahead of the sequence; the logits are those of the sequence steps only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from magnet_jax.model.attention_masks import causal_mask
from magnet_jax.model.config import MusicGenConfig
from magnet_jax.model.transformer import TransformerLM

__all__ = ["MusicGenLM"]


class MusicGenLM(TransformerLM):
    config: MusicGenConfig

    def __call__(self, sequence, text_hidden, text_mask):
        """Logits float32 [B, K, S, card] of the delayed ``sequence`` (full causal recompute)."""
        self.check_text(text_hidden, text_mask)
        return self.forward_cond(sequence, self.project_text(text_hidden, text_mask), text_mask)

    def fuse(self, text_hidden, text_mask, chroma=None):
        """(prefix or None, cross-attention cond [B, S, dim], its text mask): the conditions as the LM takes
        them (MusicGen-melody overrides this with its prepended chroma)."""
        if chroma is not None:
            raise ValueError("this MusicGen has no melody conditioner: load facebook/musicgen-melody for melody")
        return None, self.project_text(text_hidden, text_mask), text_mask

    def forward_cond(self, sequence, cond, text_mask=None, prefix=None):
        """As ``__call__`` with an already projected text ``cond`` [B, S_txt, dim] (cross-attention) and an
        optional ``prefix`` [B, P, dim] prepended to the input (positions 0..P-1)."""
        seq = self.check_codes(sequence)
        x, P = self.embed_with_prefix(seq, prefix, 0)
        T = x.shape[1]
        h = self.run_layers(x, cond, causal_mask(T, T), self.text_key_mask(text_mask))
        return self.all_logits(h[:, P:])

    def embed_with_prefix(self, codes, prefix, offset):
        """(float32 [B, P + T, dim], P): ``prefix`` + sinusoid at positions offset.., then the code embeddings."""
        if prefix is None:
            return self.embed_codes(codes, offset=offset), 0
        P = prefix.shape[1]
        pre = self.add_positions(prefix.astype(jnp.float32), offset)
        return jnp.concatenate([pre, self.embed_codes(codes, offset=offset + P)], axis=1), P

    # ------------------------------------------------------------------ incremental decoding
    def init_cache(self, batch: int, length: int) -> dict:
        """Zero keys / values ``[layers, B, length, H, Dh]`` in the compute dtype."""
        c = self.config
        shape = (c.num_layers, batch, length, c.num_heads, c.head_dim)
        return {"k": jnp.zeros(shape, self.compute_dtype), "v": jnp.zeros(shape, self.compute_dtype)}

    def decode(self, chunk, pos, cache, cross_kv, key_mask, prefix=None, heads_dkc=None):
        """Logits float32 [B, K, Tq, card] for the sequence steps ``pos .. pos+Tq-1`` given in ``chunk``,
        attending to the cached steps before ``pos``; returns ``(logits, cache)`` with the chunk stored.
        Equal to the matching columns of a full recompute (``__call__``). ``pos`` counts cache positions: a
        ``prefix`` [B, P, dim] (given with the first chunk) occupies the first P, the chunk follows it.
        ``cross_kv``: :meth:`cross_keys_values` of the cross-attention condition, once per decode;
        ``heads_dkc``: :meth:`heads_dkc`, computed once outside a decoding loop."""
        chunk = self.check_codes(chunk)
        dt = self.compute_dtype
        x, P = self.embed_with_prefix(chunk, prefix, pos)
        allowed = causal_mask(x.shape[1], cache["k"].shape[2], pos)
        h, (k, v) = self.step_layers(x, cross_kv, key_mask, self_mask=allowed, cache=cache, pos=pos)
        cache = {"k": jax.lax.dynamic_update_slice(cache["k"], k.astype(dt), (0, 0, pos, 0, 0)),
                 "v": jax.lax.dynamic_update_slice(cache["v"], v.astype(dt), (0, 0, pos, 0, 0))}
        return self.all_logits(h[:, P:], heads_dkc), cache
