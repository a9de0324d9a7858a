"""Rescoring MAGNeT's decoding with an external model (MAGNeT paper section 3.3), as the loop's ``rescore_fn``.

After each step's sampling, one teacher-forced forward of the rescorer (a :class:`~magnet_jax.model.MusicGenLM`)
over the current codes gives its probability of every token of the active codebook, and the confidences
that rank units for re-masking mix both models per token:

    p(z|y) = w * p_MAGNeT(z|y) + (1 - w) * p_rescorer(z|y)     Eq. 5        (rescorer_weight_on="magnet", default)
    p(z|y) = w * p_rescorer(z|y) + (1 - w) * p_MAGNeT(z|y)     Fig. 4 code  (rescorer_weight_on="rescorer")

The mix is at the token-probability level, *before* the span aggregation of :mod:`magnet_jax.decoding.spans`
(``nonoverlap``: chunk score ``1 - max p`` or ``sum -log p``; ``stride1`` / tokens: ``-log p``), so every
arrangement and scoring rescores the same way. ``p_MAGNeT`` is the confidence plain decoding uses (the step's
temperature-annealed, CFG-guided softmax; top-k: renormalised); ``p_rescorer`` is the rescorer's CFG-guided
softmax at temperature 1 (``rescorer_cfg_coef``, default MusicGen's ``cfg_coef``).

The rescorer's input: the MAGNeT codes ``[B, K, T]`` after the step (the active codebook fully sampled, the
finished codebooks below it, kept prompt tokens) through the delay pattern
(:mod:`magnet_jax.model.delay_pattern`). Codebooks not decoded yet hold the mask id, which is MusicGen's
special (pattern padding) token (both are ``card``; the card is checked equal). The logits predicting
``codes[:, k, t]`` are those of sequence step ``t + delays[k]`` (audiocraft ``revert_pattern_logits``), so the
sequence is the first ``T + max(delays)`` steps and every frame, the last ones included, gets a probability.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from magnet_jax.decoding import guidance
from magnet_jax.decoding._module import rebuilder
from magnet_jax.decoding.config import GenerationConfig
from magnet_jax.model import delay_pattern as pattern
from magnet_jax.model.attention_masks import causal_mask
from magnet_jax.model.layers import dense


def mix_confidences(p_magnet, p_rescorer, config: GenerationConfig):
    """Eq. 5 (or the Fig. 4 side, per ``config.rescorer_weight_on``) on token probabilities [B, T]."""
    w = jnp.float32(config.magnet_weight)
    return w * p_magnet + (1.0 - w) * p_rescorer


def check_rescorer(magnet_config, rescorer_config) -> None:
    """The rescorer must read MAGNeT's codes and text states: same codebooks, card, frame rate, text width."""
    for field in ("n_q", "card", "frame_rate", "text_dim"):
        a, b = getattr(magnet_config, field), getattr(rescorer_config, field)
        if a != b:
            raise ValueError(f"the rescorer's {field} is {b}, MAGNeT's {a}: use a rescorer with the same codec "
                             f"and text encoder (e.g. facebook/musicgen-small for the 32 kHz MAGNeT models)")
    if not hasattr(rescorer_config, "delays"):
        raise ValueError("the rescorer must be a MusicGen (autoregressive, delay pattern) LM, got "
                         f"{type(rescorer_config).__name__}")


def rescorer_probs_fn(graphdef, state, text_hidden, text_mask, cfg_coef: float):
    """``rescore_fn(codes int32 [B, K, T], stage: int) -> float32 [B, T]``: the rescorer's CFG probability of
    ``codes[:, stage, t]`` for every frame ``t``, from one forward over the delayed sequence (the conditional
    and null rows as one 2B batch of pairs, :mod:`magnet_jax.decoding.guidance`; the text keys / values once per
    generate and the null rows' zero cross-attention skipped, as
    :func:`~magnet_jax.decoding.model_logits.cfg_logits_fn`; without text, the B null rows only)."""
    model = rebuilder(graphdef, state)
    lm = model()
    c = lm.config
    delays = c.delays
    if text_hidden is None:
        cross_kv = key_mask = None
    else:
        cross_kv = lm.cross_keys_values(lm.project_text(text_hidden, text_mask))    # once per generate
        key_mask = lm.text_key_mask(text_mask)    # the null rows' zero masks do not change the cond rows' mask

    def rescore(codes, stage: int):
        B, K, T = codes.shape
        m = model()
        seq = pattern.build_sequence(codes, delays, c.mask_id)[:, :, :T + max(delays)]     # [B, K, S']
        S = seq.shape[-1]
        rows = seq if cross_kv is None else guidance.pairs(seq)
        h, _ = m.step_layers(m.embed_codes(rows), cross_kv, key_mask, self_mask=causal_mask(S, S), n_cond=B)
        steps = jnp.arange(T) + delays[stage]                                  # the steps predicting frame t
        logits = dense(h[:, steps], m.heads[...][stage], m.compute_dtype, jnp.float32)   # [N, T, card]
        if cross_kv is not None:
            logits = guidance.guide(logits, jnp.float32(cfg_coef))
        probs = jax.nn.softmax(logits, axis=-1)
        return jnp.take_along_axis(probs, codes[:, stage, :, None], axis=-1)[..., 0]

    return rescore
