"""MAGNeT's span-masking training objective (paper §3.1 / App. C; audiocraft ``MagnetSolver``).

Per batch (all pure jnp, static shapes, deterministic for a PRNG key):

1. a stage ``s ~ U{0..K-1}``, one per batch like the reference (``per_sample_stage=True``: one per sample;
   ``stage_weights``: drawn with those relative weights instead);
2. per sample ``t ~ U(0, 1)`` and mask rate ``cos(pi t / 2)``;
3. ``u = LUT[round(100 rate)]`` (at least 1) span starts at distinct uniform positions, each
   masking itself and the next ``span_len - 1`` frames (spans may merge; truncated at the end).
   The LUT inverts the expected masked fraction ``1 - C(T-L, u) / C(T, u)`` (App. C);
4. input: codebooks ``< s`` ground truth, codebook ``s`` span-masked, codebooks ``> s`` fully masked
   (mask id = card);
5. cross-entropy on codebook ``s`` only, at masked positions that are valid (padding mask), averaged;
6. classifier-free-guidance dropout: the text of the whole batch is nulled with probability ``p``
   (reference: one draw per batch; ``per_sample_cfg=True`` draws per sample). A null text is a zero
   text mask, which makes the projected condition exactly zero, as the reference's empty text does.

T5 word dropout (music 0.3) acts on the text *tokens* and belongs to the input pipeline.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=64)
def span_lut(length: int, span_len: int = 3) -> np.ndarray:
    """int32 [101]: mask percentage m -> number of span starts u whose expected masked fraction
    first reaches m/100 (``searchsorted`` left, as the reference)."""
    u2mean = [0.0]
    v = (length - span_len) / float(length)
    for u in range(1, length):
        u2mean.append(1 - v)
        v *= (length - span_len - u) / (length - u)
    return np.asarray([int(np.searchsorted(u2mean, m / 100.0)) for m in range(101)], np.int32)


@functools.lru_cache(maxsize=16)
def span_lut_table(frames: int, span_len: int) -> np.ndarray:
    """int32 [frames + 1, 101]: row ``L`` = the span LUT of a sequence of ``L`` frames (row 0 unused); the
    Hybrid-MAGNeT branch's ``mean_maskrate_to_k`` indexed by suffix length."""
    rows = [np.zeros(101, np.int32)] + [span_lut(L, span_len) for L in range(1, frames + 1)]
    return np.stack(rows)


def cosine_mask_rate(t):
    return jnp.cos(t * (math.pi / 2))


def span_mask(key, mask_rate, length: int, span_len: int = 3, lut_length: int | None = None, first=None):
    """bool [B, T] span mask with per-sample target rates ``mask_rate`` [B].

    ``lut_length``: sequence length the LUT is computed for (the reference: the segment length);
    defaults to ``length``. ``first`` int [B] (Hybrid-MAGNeT's suffix): spans start only at frames
    ``>= first[b]``, their number from the LUT of the suffix's length ``length - first[b]``.
    """
    B = mask_rate.shape[0]
    noise = jax.random.uniform(key, (B, length))
    if first is not None:
        allowed = jnp.arange(length)[None, :] >= first[:, None]
        noise = jnp.where(allowed, noise, 2.0)                      # allowed frames rank first
        frames = length - first
    else:
        frames = length
    ranks = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1)      # a uniform random permutation per row
    if span_len <= 1:
        n_starts = jnp.maximum(jnp.round(frames * mask_rate), 1).astype(jnp.int32)
    else:
        percent = jnp.round(100 * mask_rate).astype(jnp.int32)
        if first is None:
            n_starts = jnp.asarray(span_lut(lut_length or length, span_len))[percent]
        else:
            n_starts = jnp.asarray(span_lut_table(length, span_len))[frames, percent]
        n_starts = jnp.maximum(n_starts, 1)
    starts = ranks < n_starts[:, None]
    if first is not None:
        starts = starts & allowed
    mask = starts
    for shift in range(1, span_len):
        mask = mask | jnp.pad(starts, ((0, 0), (shift, 0)))[:, :length]
    return mask


def masked_inputs(codes, stage, stage_mask, mask_id: int):
    """Model input for ``stage`` (scalar or [B]): ``< stage`` kept, ``== stage`` span-masked, ``> stage`` masked."""
    K = codes.shape[1]
    k = jnp.arange(K)[None, :, None]
    stage = jnp.asarray(stage).reshape(-1, 1, 1)
    masked = (k > stage) | ((k == stage) & stage_mask[:, None, :])
    return jnp.where(masked, mask_id, codes)


def select_codebook(codes, stage):
    """codes [B, K, T] -> [B, T] of codebook ``stage`` (scalar or [B])."""
    stage = jnp.asarray(stage)
    if stage.ndim == 0:
        return jnp.take(codes, stage, axis=1)
    return jnp.take_along_axis(codes, stage[:, None, None], axis=1)[:, 0]


def masked_cross_entropy(logits, targets, weights):
    """Mean CE over positions with ``weights`` > 0 (0 if there are none). logits [B,T,V] f32, targets [B,T]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    targets = jnp.where(weights > 0, targets, 0)  # padded frames hold the mask id (= V, out of range)
    nll = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    w = weights.astype(jnp.float32)
    return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0), jnp.sum(w)


def cfg_dropout(key, text_mask, p: float, per_sample: bool = False):
    """Nulls the text (mask -> 0) of the batch (or of each sample) with probability ``p``."""
    B = text_mask.shape[0]
    drop = jax.random.uniform(key, (B,) if per_sample else ()) < p
    keep = jnp.broadcast_to(~drop, (B,))
    return text_mask * keep[:, None].astype(text_mask.dtype)


def sample_stage(key, batch: int, num_codebooks: int, per_sample: bool = False, weights=()):
    """The stage (codebook) to train: uniform like the reference, or drawn with relative ``weights`` (one per
    codebook); one per batch (a scalar) or, ``per_sample``, one per sample ([B])."""
    shape = (batch,) if per_sample else ()
    if weights:
        p = jnp.asarray(weights, jnp.float32)
        return jax.random.choice(key, num_codebooks, shape, p=p / jnp.sum(p)).astype(jnp.int32)
    return jax.random.randint(key, shape, 0, num_codebooks)


def prepare_batch(codes, padding_mask, text_mask, key, *, num_codebooks: int, mask_id: int, span_len: int = 3,
                  cfg_dropout_p: float = 0.0, per_sample_stage: bool = False, per_sample_cfg: bool = False,
                  stage=None, stage_weights=()) -> dict:
    """Samples stage, mask rates, span masks and CFG dropout: the model inputs and the loss targets.

    Returns ``inputs`` [B, K, T], ``stage`` (scalar or [B]), ``targets`` [B, T] (codebook ``stage``),
    ``weights`` [B, T] (masked & valid), ``text_mask`` (after CFG dropout) and ``mask_rate``.
    """
    B, K, T = codes.shape
    k_stage, k_rate, k_span, k_cfg = jax.random.split(key, 4)
    if stage is None:
        stage = sample_stage(k_stage, B, num_codebooks, per_sample_stage, stage_weights)
    rate = cosine_mask_rate(jax.random.uniform(k_rate, (B,)))
    mask = span_mask(k_span, rate, T, span_len)
    if cfg_dropout_p > 0:
        text_mask = cfg_dropout(k_cfg, text_mask, cfg_dropout_p, per_sample_cfg)
    return {"inputs": masked_inputs(codes, stage, mask, mask_id), "stage": stage,
            "targets": select_codebook(codes, stage), "weights": mask & padding_mask, "text_mask": text_mask,
            "mask_rate": jnp.mean(mask.astype(jnp.float32))}


def loss_from_batch(lm, batch: dict, text_hidden):
    """Masked cross-entropy of the LM on a :func:`prepare_batch` result -> (loss, num_tokens).

    An optional ``batch["key_mask"]`` [B, S] sets the cross-attention key mask instead of ``text_mask``
    (the text itself is still masked by ``text_mask``): a micro-batch of a larger batch passes the
    whole batch's longest-text mask, so that gradient accumulation sees the keys one big batch sees."""
    if "key_mask" not in batch:
        logits = lm.stage_logits(batch["inputs"], text_hidden, batch["text_mask"], batch["stage"])
    else:
        lm.check_text(text_hidden, batch["text_mask"])
        cond = lm.project_text(text_hidden, batch["text_mask"])
        logits = lm.stage_logits(batch["inputs"], None, batch["key_mask"], batch["stage"], cond=cond)
    return masked_cross_entropy(logits, batch["targets"], batch["weights"])



class MagnetObjective:
    """MAGNeT's span masking as the train step's :class:`~magnet_jax.objectives.base.Objective`."""
    name = "magnet"
    PER_SAMPLE_KEYS = ("inputs", "targets", "weights", "text_mask", "stage")   # stage: [B] with per_sample_stage

    def prepare(self, batch, key, *, model_config, step_config, stage=None) -> dict:
        m, s = model_config, step_config
        draws = {} if stage is not None else dict(cfg_dropout_p=float(s.cfg_dropout),
                                                  per_sample_stage=bool(s.per_sample_stage),
                                                  per_sample_cfg=bool(s.per_sample_cfg),
                                                  stage_weights=s.stage_weights)
        return prepare_batch(batch["codes"], batch["padding_mask"], batch["text_mask"], key, num_codebooks=m.n_q,
                             mask_id=m.mask_id, span_len=m.span_len, stage=stage, **draws)

    def loss(self, lm, prepared: dict, text_hidden):
        return loss_from_batch(lm, prepared, text_hidden)


OBJECTIVE = MagnetObjective()

def magnet_loss(lm, codes, padding_mask, text_hidden, text_mask, key, *, cfg_dropout_p: float = 0.0,
                per_sample_stage: bool = False, per_sample_cfg: bool = False, stage=None):
    """The MAGNeT training loss for one batch.

    codes int [B, K, T]; padding_mask bool [B, T] (True = real frame); text_hidden [B, S, E] (T5 last
    hidden state); text_mask [B, S]. ``stage`` forces a stage (int or [B]); otherwise it is sampled.
    Returns ``(loss, metrics)`` with metrics ``stage``, ``mask_rate``, ``num_tokens``.
    """
    cfg = lm.config
    batch = prepare_batch(codes, padding_mask, text_mask, key, num_codebooks=cfg.n_q, mask_id=cfg.mask_id,
                          span_len=cfg.span_len, cfg_dropout_p=cfg_dropout_p, per_sample_stage=per_sample_stage,
                          per_sample_cfg=per_sample_cfg, stage=stage)
    loss, n = loss_from_batch(lm, batch, text_hidden)
    return loss, {"stage": batch["stage"], "mask_rate": batch["mask_rate"], "num_tokens": n}
