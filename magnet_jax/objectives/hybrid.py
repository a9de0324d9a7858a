"""The Hybrid-MAGNeT training objective (audiocraft branch ``hybrid_magnet``, ``HybridMagnetSolver``).

Per sample (pure jnp, static shapes):

1. a stage ``s ~ U{0..K-1}`` and a prompt step ``P ~ U{0..T-1}`` (sequence steps of the delayed layout);
2. frame ``t`` of codebook ``k`` is in the autoregressive prefix iff ``t < P - k`` (its logits sit in row
   ``t + k < P``, a causal row of :func:`~magnet_jax.model.hybrid.semi_autoregressive_mask`), else in the
   non-autoregressive suffix;
3. suffix input: codebooks ``< s`` ground truth, codebook ``s`` span-masked (MAGNeT spans; mask rate
   ``cos(pi u / 2)``, ``u ~ U(0, 1)``; span starts only at frames ``>= max(P - s, 0)``, their number from the
   span LUT of the suffix's length, as the branch's 2-D LUT: :func:`magnet_jax.objectives.magnet.span_mask`
   with ``first``), codebooks ``> s`` fully masked; the prefix is
   ground truth on every codebook;
4. cross-entropy on every prefix token (autoregressive, all codebooks, delay pattern) and on the masked suffix
   tokens of codebook ``s``, valid frames only; **one token mean over both** (the branch's
   ``_compute_cross_entropy_hybrid_magnet``: ``F.cross_entropy(ignore_index)`` over the union);
5. CFG dropout of the text as MAGNeT's (:func:`magnet_jax.objectives.magnet.cfg_dropout`).

Deviations from the branch, which does not run ("unclean, not working yet"): its ``get_mask`` does not
exist (we use its ``calc_spans_mask``); its ``run_step`` calls MusicGen's per-codebook ``_compute_cross_entropy``
(a tuple) where its own pooled hybrid CE is clearly meant (we use the pooled mean).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from magnet_jax.objectives import magnet as masking


def prepare_batch(codes, padding_mask, text_mask, key, *, num_codebooks: int, mask_id: int, span_len: int = 3,
                  cfg_dropout_p: float = 0.0, per_sample_cfg: bool = False, stage=None, prompt_step=None,
                  mask_rate=None) -> dict:
    """Samples stage, prompt step, spans and CFG dropout -> the model inputs and the loss targets.

    Returns ``inputs`` [B, K, T], ``stage`` [B], ``prompt_step`` [B], ``targets`` [B, K, T] (the codes),
    ``weights`` [B, K, T] (prefix | masked stage tokens, & valid), ``ar_weights`` / ``nar_weights`` (the
    two parts), ``text_mask`` (after CFG dropout), ``mask_rate`` (mean over the stage's suffix).
    ``stage`` / ``prompt_step`` / ``mask_rate`` ([B] or scalars) force those draws (tests, evaluation).
    """
    B, K, T = codes.shape
    if K != num_codebooks:
        raise ValueError(f"codes have {K} codebooks, the model {num_codebooks}")
    k_stage, k_step, k_rate, k_span, k_cfg = jax.random.split(key, 5)
    stage = (jax.random.randint(k_stage, (B,), 0, K) if stage is None
             else jnp.broadcast_to(jnp.asarray(stage, jnp.int32), (B,)))
    prompt_step = (jax.random.randint(k_step, (B,), 0, T) if prompt_step is None
                   else jnp.broadcast_to(jnp.asarray(prompt_step, jnp.int32), (B,)))
    rate = (masking.cosine_mask_rate(jax.random.uniform(k_rate, (B,))) if mask_rate is None
            else jnp.broadcast_to(jnp.asarray(mask_rate, jnp.float32), (B,)))
    first = jnp.maximum(prompt_step - stage, 0)                  # the stage codebook's first suffix frame
    spans = masking.span_mask(k_span, rate, T, span_len, first=first)   # [B, T]: spans in [first, T)
    k = jnp.arange(K)[None, :, None]
    t = jnp.arange(T)[None, None, :]
    suffix = t >= (prompt_step[:, None, None] - k)               # [B, K, T]
    st = stage[:, None, None]
    masked = suffix & ((k > st) | ((k == st) & spans[:, None, :]))
    valid = padding_mask[:, None, :].astype(bool)
    ar_w = ~suffix & valid
    nar_w = suffix & (k == st) & spans[:, None, :] & valid
    if cfg_dropout_p > 0:
        text_mask = masking.cfg_dropout(k_cfg, text_mask, cfg_dropout_p, per_sample_cfg)
    rate_seen = jnp.sum(spans, axis=-1) / jnp.maximum(T - first, 1)     # masked share of the stage's suffix
    return {"inputs": jnp.where(masked, mask_id, codes).astype(jnp.int32), "stage": stage,
            "prompt_step": prompt_step, "targets": codes, "weights": ar_w | nar_w, "ar_weights": ar_w,
            "nar_weights": nar_w, "text_mask": text_mask, "mask_rate": jnp.mean(rate_seen)}


def _logits(lm, batch: dict, text_hidden):
    if "key_mask" not in batch:
        return lm(batch["inputs"], text_hidden, batch["text_mask"], batch["prompt_step"], batch["stage"])
    lm.check_text(text_hidden, batch["text_mask"])     # a micro-batch: the whole batch's key mask
    cond = lm.project_text(text_hidden, batch["text_mask"])
    return lm.frame_logits(batch["inputs"], cond, batch["key_mask"], batch["prompt_step"], batch["stage"])


def loss_from_batch(lm, batch: dict, text_hidden):
    """Pooled cross-entropy of a :class:`~magnet_jax.model.hybrid.HybridMagnetLM` on a :func:`prepare_batch`
    result -> (loss, num_tokens), as :func:`magnet_jax.objectives.magnet.loss_from_batch`."""
    return masking.masked_cross_entropy(_logits(lm, batch, text_hidden), batch["targets"], batch["weights"])



class HybridObjective:
    """Hybrid-MAGNeT's objective as the train step's :class:`~magnet_jax.objectives.base.Objective` (a per-sample
    stage and prompt step; ``step_config.per_sample_stage`` does not apply)."""
    name = "hybrid"
    PER_SAMPLE_KEYS = ("inputs", "targets", "weights", "text_mask", "stage", "prompt_step")

    def prepare(self, batch, key, *, model_config, step_config, stage=None) -> dict:
        m, s = model_config, step_config
        return prepare_batch(batch["codes"], batch["padding_mask"], batch["text_mask"], key, num_codebooks=m.n_q,
                             mask_id=m.mask_id, span_len=m.span_len, stage=stage,
                             cfg_dropout_p=float(s.cfg_dropout) if stage is None else 0.0,
                             per_sample_cfg=bool(s.per_sample_cfg))

    def loss(self, lm, prepared: dict, text_hidden):
        return loss_from_batch(lm, prepared, text_hidden)


OBJECTIVE = HybridObjective()

def hybrid_loss(lm, codes, padding_mask, text_hidden, text_mask, key, *, cfg_dropout_p: float = 0.0,
                per_sample_cfg: bool = False, stage=None, prompt_step=None, mask_rate=None):
    """The Hybrid-MAGNeT loss for one batch -> ``(loss, metrics)``; metrics ``ar_ce`` / ``nar_ce`` (the token
    means of the two parts), ``num_ar_tokens`` / ``num_nar_tokens``, ``stage``, ``prompt_step``, ``mask_rate``."""
    c = lm.config
    batch = prepare_batch(codes, padding_mask, text_mask, key, num_codebooks=c.n_q, mask_id=c.mask_id,
                          span_len=c.span_len, cfg_dropout_p=cfg_dropout_p, per_sample_cfg=per_sample_cfg,
                          stage=stage, prompt_step=prompt_step, mask_rate=mask_rate)
    logits = _logits(lm, batch, text_hidden)
    loss, n = masking.masked_cross_entropy(logits, batch["targets"], batch["weights"])
    ar, n_ar = masking.masked_cross_entropy(logits, batch["targets"], batch["ar_weights"])
    nar, n_nar = masking.masked_cross_entropy(logits, batch["targets"], batch["nar_weights"])
    return loss, {"ar_ce": ar, "nar_ce": nar, "num_tokens": n, "num_ar_tokens": n_ar, "num_nar_tokens": n_nar,
                  "stage": batch["stage"], "prompt_step": batch["prompt_step"], "mask_rate": batch["mask_rate"]}
