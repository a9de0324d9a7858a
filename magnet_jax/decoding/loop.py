"""The MAGNeT decoding loop over a typed state, model-agnostic (audiocraft ``_generate_magnet`` / ``_generate_stage``).

For each codebook ``stage`` in order (coarse -> fine), ``n = decoding_steps[stage]`` steps ``i``:

1. ``num_masked = max(int(mask_p[i] * n_gen), 1)`` units (``n_gen``: units not kept), ``mask_p`` from
   :func:`~magnet_jax.decoding.schedule.stage_schedule`.
2. Re-mask the highest-scored units (:mod:`~magnet_jax.decoding.spans`); re-impose the kept tokens.
3. ``logits = logits_fn(codes, stage, cfg_coef[i])`` (the model and its classifier-free guidance).
4. ``probs = softmax(logits / temperature[i])``; sample (:func:`~magnet_jax.decoding.sampling.sample_tokens`)
   with ``fold_in(rng, global step)``; only masked positions take the new token.
5. Score the new units from the sampled tokens' confidences; with a ``rescore_fn`` (rescoring,
   :mod:`~magnet_jax.decoding.rescoring`) those are first mixed with the rescorer's probabilities (Eq. 5).
   With ``config.choice_temp > 0`` (beyond the reference: MaskGIT's choice temperature) Gumbel noise, scaled by
   the stage's annealed ``choice_temp[i]``, is subtracted from the new units' scores.

A static Python loop runs the K stages, each a ``lax.fori_loop`` over its steps (compile time does not
grow with the step counts); the schedule is host float32 constants, the unit counts are per item.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from magnet_jax.decoding.config import GenerationConfig
from magnet_jax.decoding.rescoring import mix_confidences
from magnet_jax.decoding.sampling import sample_tokens
from magnet_jax.decoding.schedule import stage_schedule
from magnet_jax.decoding.spans import DONT_REMASK_SCORE, Units, units_for

# logits_fn(codes int32 [B, K, T], stage: int (static), cfg_coef float32 scalar) -> float32 [B, T, card]
LogitsFn = Callable[[jax.Array, int, jax.Array], jax.Array]
# rescore_fn(codes int32 [B, K, T] after sampling, stage: int (static)) -> float32 [B, T] p_rescorer(codes[:, stage])
RescoreFn = Callable[[jax.Array, int], jax.Array]


@struct.dataclass
class Trace:
    """Per-step history over all ``N = sum(decoding_steps)`` steps (global step index ``g``)."""
    num_masked: jax.Array      # int32 [N, B]     units re-masked
    seq_in: jax.Array          # int32 [N, B, T]  the stage row fed to the model (mask id = card)
    seq_out: jax.Array         # int32 [N, B, T]  the stage row after sampling
    cfg_coef: jax.Array        # float32 [N]
    temperature: jax.Array     # float32 [N]

    @classmethod
    def zeros(cls, n_steps: int, B: int, T: int) -> "Trace":
        return cls(num_masked=jnp.zeros((n_steps, B), jnp.int32), seq_in=jnp.zeros((n_steps, B, T), jnp.int32),
                   seq_out=jnp.zeros((n_steps, B, T), jnp.int32), cfg_coef=jnp.zeros((n_steps,), jnp.float32),
                   temperature=jnp.zeros((n_steps,), jnp.float32))

    def to_dict(self) -> dict[str, jax.Array]:
        return {f: getattr(self, f) for f in ("num_masked", "seq_in", "seq_out", "cfg_coef", "temperature")}


@struct.dataclass
class DecodeState:
    """The loop carry: codes of every codebook, the current stage's unit scores, the optional trace."""
    codes: jax.Array           # int32 [B, K, T]
    scores: jax.Array          # float32 [B, U]   higher = re-masked next
    trace: Trace | None = None

    def set_row(self, step, **rows) -> "DecodeState":
        """Writes row ``step`` of the trace arrays named in ``rows`` (no-op without a trace)."""
        if self.trace is None:
            return self
        return self.replace(trace=self.trace.replace(
            **{k: getattr(self.trace, k).at[step].set(v) for k, v in rows.items()}))


@struct.dataclass
class Stage:
    """Constants of one stage: its codebook, first global step and host schedule."""
    index: int = struct.field(pytree_node=False)
    offset: int = struct.field(pytree_node=False)
    mask_p: jax.Array          # float32 [n]
    cfg_coef: jax.Array        # float32 [n]
    temperature: jax.Array     # float32 [n]
    choice_temp: jax.Array     # float32 [n]  re-masking noise scale (0 unless config.choice_temp)

    @classmethod
    def build(cls, index: int, offset: int, n_steps: int, config: GenerationConfig) -> "Stage":
        sch = stage_schedule(n_steps, config)
        return cls(index=index, offset=offset, **{k: jnp.asarray(sch[k]) for k in ("mask_p", "cfg_coef",
                                                                                   "temperature", "choice_temp")})


def _step(i, state: DecodeState, *, stage: Stage, logits_fn: LogitsFn, config: GenerationConfig, units: Units,
          span_len: int, mask_id: int, known, keep, n_gen, rng, rescore_fn: RescoreFn | None = None) -> DecodeState:
    """Step ``i`` of ``stage``; ``known`` / ``keep`` / ``n_gen``: the kept tokens [B, K, T], [B, T], units [B]."""
    s = stage.index
    nm = jnp.maximum(jnp.floor(stage.mask_p[i] * n_gen).astype(jnp.int32), 1)            # [B]
    unit_sel, tok_sel = units.select(state.scores, nm, span_len)
    seq = jnp.where(tok_sel, mask_id, state.codes[:, s])
    seq = jnp.where(keep, known[:, s], seq)
    codes = state.codes.at[:, s].set(seq)

    logits = logits_fn(codes, s, stage.cfg_coef[i])
    probs = jax.nn.softmax(logits / stage.temperature[i], axis=-1)
    sampled, conf = sample_tokens(jax.random.fold_in(rng, stage.offset + i), logits, probs, config)

    masked = seq == mask_id
    new_seq = jnp.where(masked, sampled, seq)
    p_tok = jnp.take_along_axis(conf, sampled[..., None], axis=-1)[..., 0]                 # [B, T]
    if rescore_fn is not None:                       # mixed per token, before the span aggregation
        p_tok = mix_confidences(p_tok, rescore_fn(codes.at[:, s].set(new_seq), s), config)
    scores = units.score(p_tok, unit_sel, masked, span_len, config.span_scoring)
    if config.choice_temp > 0:                       # beyond the reference; off: audiocraft's ranking, bit for bit
        noise = jax.random.gumbel(jax.random.fold_in(jax.random.fold_in(rng, stage.offset + i), 1), scores.shape)
        scores = jnp.where(scores == DONT_REMASK_SCORE, scores, scores - stage.choice_temp[i] * noise)
    state = state.replace(codes=codes.at[:, s].set(new_seq), scores=scores.astype(jnp.float32))
    return state.set_row(stage.offset + i, num_masked=nm, seq_in=seq, seq_out=new_seq,
                         cfg_coef=stage.cfg_coef[i], temperature=stage.temperature[i])


def decode_loop(logits_fn: LogitsFn, config: GenerationConfig, known, keep, rng, *, mask_id: int, span_len: int,
                trace: bool = False, rescore_fn: RescoreFn | None = None, first_stage: int = 0):
    """Runs every stage -> (codes int32 [B, K, T], :class:`Trace` or None). Traceable (jit it from outside).

    ``known`` int32 [B, K, T]: the tokens at kept positions; ``keep`` bool [B, T]: kept on every codebook
    (prompt, infill context), bit-identical in the output. ``T`` must already be ``units.usable(T)``.
    ``rescore_fn``: rescoring (used only when ``config.rescoring``; without it the loop is plain decoding).
    ``first_stage``: codebooks below it are ``known`` everywhere and not decoded (the stages from it on keep their
    global step indices, so their keys are those of a full decode).
    """
    B, K, T = known.shape
    if len(config.decoding_steps) != K:
        raise ValueError(f"decoding_steps has {len(config.decoding_steps)} entries for {K} codebooks")
    units = units_for(config.span_arrangement, span_len)
    if units.usable(T, span_len) != T:
        raise ValueError(f"{units.name} units need T divisible by span_len={span_len}, got T={T}")
    unit_keep = units.unit_keep(keep, span_len)
    n_gen = jnp.sum(~unit_keep, axis=-1).astype(jnp.float32)                            # [B] units to generate
    init_scores = jnp.where(unit_keep, jnp.float32(DONT_REMASK_SCORE), jnp.float32(0.0))
    given = keep[:, None, :] | (jnp.arange(K) < first_stage)[None, :, None]
    state = DecodeState(codes=jnp.where(given, known, mask_id).astype(jnp.int32), scores=init_scores,
                        trace=Trace.zeros(sum(config.decoding_steps), B, T) if trace else None)
    rescore_fn = rescore_fn if config.rescoring else None
    offsets = np.cumsum((0,) + config.decoding_steps)
    for s, n_steps in enumerate(config.decoding_steps):
        if s < first_stage:
            continue
        stage = Stage.build(s, int(offsets[s]), n_steps, config)
        body = functools.partial(_step, stage=stage, logits_fn=logits_fn, config=config, units=units,
                                 span_len=span_len, mask_id=mask_id, known=known, keep=keep, n_gen=n_gen, rng=rng,
                                 rescore_fn=rescore_fn)
        state = jax.lax.fori_loop(0, n_steps, body, state.replace(scores=init_scores))
    return state.codes, state.trace
