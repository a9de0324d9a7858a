"""The MusicGen training objective (audiocraft ``MusicGenSolver.run_step`` / ``_compute_cross_entropy``).

    seq    = delay_pattern(codes)[:, :, :T]          # causal: steps >= T do not affect the used logits
    logits = lm(seq, text) reverted to frames        # logits predicting codes[:, k, t] (step t + delays[k])
    mask   = padding_mask & (t + delays[k] < T)      # keep_only_valid_steps: a codebook's last delays[k] frames
    ce     = mean_k  CE(logits_k[mask_k], codes_k[mask_k])    # per-codebook mean over its valid tokens

CFG dropout as MAGNeT's trainer (:func:`magnet_jax.objectives.magnet.cfg_dropout`; audiocraft's
``ClassifierFreeGuidanceDropout``: one draw for the whole batch, or per sample with ``per_sample_cfg``).

:class:`MusicGenObjective` (``config.objective=musicgen``; :func:`prepare_batch` / :func:`loss_from_batch`) is what
the train step (:mod:`magnet_jax.training.step`) calls: ``stage=k`` restricts the loss to codebook k
(evaluation reports the per-codebook CE; their mean is the loss). With gradient accumulation the step takes
the token-weighted mean of the micro-batch losses (equal to the loss when the codebooks' valid counts match).
"""
from __future__ import annotations

import jax.numpy as jnp
import optax

from magnet_jax.model import delay_pattern as pattern
from magnet_jax.objectives import magnet as masking


def prepare_batch(codes, padding_mask, text_mask, key, *, delays, special: int, cfg_dropout_p: float = 0.0,
                  per_sample_cfg: bool = False, stage=None) -> dict:
    """codes int [B, K, T] (padded frames: any id, masked by ``padding_mask`` bool [B, T]) -> the model
    inputs (the delayed sequence, ``T`` steps), targets, weights [B, K, T] and the text mask after CFG dropout."""
    B, K, T = codes.shape
    codes = jnp.asarray(codes, jnp.int32)
    valid = jnp.asarray(pattern.frame_valid_mask(T, delays))[None] & padding_mask[:, None, :].astype(bool)
    if stage is not None:
        valid = valid & (jnp.arange(K) == stage)[None, :, None]
    if cfg_dropout_p > 0:
        text_mask = masking.cfg_dropout(key, text_mask, cfg_dropout_p, per_sample_cfg)
    targets = jnp.where(valid, codes, 0)             # padded ids (the pad / special token) never reach the CE
    return {"inputs": pattern.build_sequence(codes, delays, special)[:, :, :T], "targets": targets,
            "weights": valid, "text_mask": text_mask, "stage": jnp.zeros((), jnp.int32),
            "mask_rate": jnp.zeros((), jnp.float32)}


def ce_per_codebook(lm, batch: dict, text_hidden):
    """(token-mean CE per codebook [K], valid tokens per codebook [K]) of a :func:`prepare_batch` result."""
    c = lm.config
    T = batch["targets"].shape[-1]
    if "key_mask" in batch:          # a micro-batch: the whole batch's text-key mask (training/step.py)
        lm.check_text(text_hidden, batch["text_mask"])
        out = lm.forward_cond(batch["inputs"], lm.project_text(text_hidden, batch["text_mask"]), batch["key_mask"])
    else:
        out = lm(batch["inputs"], text_hidden, batch["text_mask"])
    logits = pattern.revert_logits(out, c.delays, T)                                   # [B, K, T, card]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])      # [B, K, T]
    n_k = jnp.sum(batch["weights"].astype(jnp.float32), axis=(0, 2))
    return jnp.sum(jnp.where(batch["weights"], ce, 0.0), axis=(0, 2)) / jnp.maximum(n_k, 1.0), n_k


def loss_from_batch(lm, batch: dict, text_hidden):
    """(loss, num_tokens): the mean over codebooks (those with any weight) of each codebook's token-mean CE."""
    per_k, n_k = ce_per_codebook(lm, batch, text_hidden)
    active = (n_k > 0).astype(jnp.float32)
    return jnp.sum(per_k * active) / jnp.maximum(jnp.sum(active), 1.0), jnp.sum(n_k)



class MusicGenObjective:
    """MusicGen's delay-pattern CE as the train step's :class:`~magnet_jax.objectives.base.Objective` (every
    codebook; ``stage`` restricts the loss to one, for evaluation; ``step_config.per_sample_stage`` does not
    apply)."""
    name = "musicgen"
    PER_SAMPLE_KEYS = ("inputs", "targets", "weights", "text_mask")

    def prepare(self, batch, key, *, model_config, step_config, stage=None) -> dict:
        m, s = model_config, step_config
        return prepare_batch(batch["codes"], batch["padding_mask"], batch["text_mask"], key, delays=m.delays,
                             special=m.mask_id, stage=stage,
                             cfg_dropout_p=float(s.cfg_dropout) if stage is None else 0.0,
                             per_sample_cfg=bool(s.per_sample_cfg))

    def loss(self, lm, prepared: dict, text_hidden):
        return loss_from_batch(lm, prepared, text_hidden)


OBJECTIVE = MusicGenObjective()

def musicgen_loss(lm, codes, text_hidden, text_mask, *, padding_mask=None, rng=None, cfg_dropout: float = 0.0,
                  per_sample_cfg: bool = False):
    """``(loss, {"ce_per_codebook": [K]})``. codes int [B, K, T] (real codes < card), padding_mask bool [B, T]
    (True = a real frame; default all), ``rng`` needed when ``cfg_dropout > 0``."""
    c = lm.config
    B, K, T = codes.shape
    if cfg_dropout > 0.0 and rng is None:
        raise ValueError("musicgen_loss: cfg_dropout > 0 needs rng")
    pm = jnp.ones((B, T), bool) if padding_mask is None else padding_mask
    batch = prepare_batch(codes, pm, text_mask, rng, delays=c.delays, special=c.mask_id, cfg_dropout_p=cfg_dropout,
                          per_sample_cfg=per_sample_cfg)
    per_k, n_k = ce_per_codebook(lm, batch, text_hidden)
    active = (n_k > 0).astype(jnp.float32)
    return jnp.sum(per_k * active) / jnp.maximum(jnp.sum(active), 1.0), {"ce_per_codebook": per_k}
