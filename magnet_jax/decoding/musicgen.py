"""MusicGen decoding as one jitted program (audiocraft ``LMModel.generate``).

One prefill of the known prefix (the leading special step plus the prompt), then a ``lax.fori_loop`` of
single-step decodes over a static-size KV cache: compile time does not depend on the number of steps.
CFG runs the conditional and null rows as one 2B batch (or two B batches with ``two_step_cfg``).

    generate(lm, text_hidden [B, S, E] | None, text_mask [B, S] | None, config=..., rng=key,
             num_frames=T, prompt=codes [B, K, P] | None, chroma=[B, Tc, 12] | None)
        -> codes int32 [B, K, T]   (prompt included; chroma: MusicGen-melody only)

MusicGen-melody's prepended conditions (chroma, and the text for the released models) are a prefix of
the prefill; the cache holds them ahead of the sequence steps.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.decoding import guidance
from magnet_jax.decoding._module import as_key, rebuilder
from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.decoding.sampling import sample_next
from magnet_jax.model import MusicGenLM
from magnet_jax.model import delay_pattern as pattern

UNKNOWN = -1   # not generated yet (audiocraft's ``unknown_token``)


def _guided(lm, config, chunk, pos, caches, conds, mode, first=False, heads_dkc=None):
    """CFG logits [B, K, Tq, card] and the updated caches. ``conds``: list of (cross_kv, key_mask, prefix);
    the prefix (prepended conditions) goes in with the first chunk only."""
    def dec(x, cache, cond):
        return lm.decode(x, pos, cache, cond[0], cond[1], prefix=cond[2] if first else None, heads_dkc=heads_dkc)
    if mode == "none":
        logits, c = dec(chunk, caches[0], conds[0])
        return logits, [c]
    if mode == "batch":                                   # one 2B batch of pairs (decoding.guidance)
        both, c = dec(guidance.pairs(chunk), caches[0], conds[0])
        (cond_l, uncond_l), caches = guidance.split(both), [c]
    else:                                                                        # two_step_cfg
        cond_l, c1 = dec(chunk, caches[0], conds[0])
        uncond_l, c2 = dec(chunk, caches[1], conds[1])
        caches = [c1, c2]
    return uncond_l + (cond_l - uncond_l) * config.cfg_coef, caches


def _branch(lm, text_hidden, text_mask, chroma):
    """(cross_kv, key_mask, prefix) of one CFG branch."""
    prefix, cond, mask = lm.fuse(text_hidden, text_mask, chroma)
    return lm.cross_keys_values(cond), lm.text_key_mask(mask), prefix


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "frames"))
def _generate(graphdef, state, text_hidden, text_mask, prompt, rng, chroma, *, config: MusicGenGenerationConfig,
              frames: int):
    model = rebuilder(graphdef, state)
    lm = model()
    c = lm.config
    B, K, P = prompt.shape
    delays = c.delays
    S = pattern.num_steps(frames, delays)
    gen = jnp.full((B, K, frames), UNKNOWN, jnp.int32).at[:, :, :P].set(prompt.astype(jnp.int32))
    seq = pattern.build_sequence(gen, delays, c.mask_id)                       # [B, K, S]

    dt = lm.compute_dtype
    melody = getattr(c, "n_chroma", 0) > 0            # MusicGen-melody: null rows get the null chroma
    if text_hidden is None:                          # unconditional: one zero text key (-> zero cross-attn)
        cond = jnp.zeros((B, 1, c.dim), dt)
        conds = [(lm.cross_keys_values(cond), None, None)]
        n_rows, mode = [B], "none"
    else:
        null_hidden, null_mask = jnp.zeros_like(text_hidden), jnp.zeros_like(text_mask)
        null_chroma = lm.null_chroma(B) if melody else None
        if config.two_step_cfg:
            conds = [_branch(lm, text_hidden, text_mask, chroma), _branch(lm, null_hidden, null_mask, null_chroma)]
            n_rows, mode = [B, B], "two_step"
        else:
            both_chroma = None if not melody else guidance.with_null(lm.check_chroma(chroma, B), null_chroma)
            conds = [_branch(lm, guidance.with_null(text_hidden, null_hidden), guidance.with_null(text_mask, null_mask),
                             both_chroma)]
            n_rows, mode = [2 * B], "batch"
    npre = 0 if conds[0][2] is None else conds[0][2].shape[1]     # prepended condition frames
    caches = [lm.init_cache(n, npre + S - 1) for n in n_rows]

    def write(seq, step, logits, key):
        tok = sample_next(key, logits, config)                                   # [B, K]
        cur = jax.lax.dynamic_slice_in_dim(seq, step, 1, axis=2)[..., 0]
        new = jnp.where(cur == UNKNOWN, tok, cur)
        return jax.lax.dynamic_update_slice_in_dim(seq, new[..., None], step, axis=2)

    start = P + 1 + delays[0]                        # first step holding frame P (the prefix is known)
    logits, caches = _guided(lm, config, seq[:, :, :start], 0, caches, conds, mode, first=True)
    seq = write(seq, start, logits[:, :, -1], jax.random.fold_in(rng, start))

    heads_dkc = lm.heads_dkc()                       # once: in the loop XLA would transpose the heads every step

    def body(step, carry):
        seq, caches = carry
        chunk = jax.lax.dynamic_slice_in_dim(seq, step - 1, 1, axis=2)
        logits, caches = _guided(model(), config, chunk, npre + step - 1, caches, conds, mode, heads_dkc=heads_dkc)
        return write(seq, step, logits[:, :, -1], jax.random.fold_in(rng, step)), caches

    seq, _ = jax.lax.fori_loop(start + 1, S, body, (seq, caches))
    return pattern.revert_sequence(seq, delays, frames)


def generate(lm: MusicGenLM, text_hidden=None, text_mask=None, *, config: MusicGenGenerationConfig | None = None,
             rng=None, num_frames: int | None = None, prompt=None, chroma=None):
    """Codes int32 [B, K, num_frames] (the prompt's frames first). ``num_frames`` defaults to the model's
    window (``segment_frames``); ``text_hidden=None`` generates unconditionally (``B`` from ``prompt``).
    ``chroma`` [B, Tc, n_chroma]: MusicGen-melody's melody (None: no melody, the null chroma).
    ``rng``: a ``jax.random.key`` or an int seed (default ``key(0)``); step ``s`` samples with ``fold_in(rng, s)``."""
    config = MusicGenGenerationConfig() if config is None else config
    c = lm.config
    T = int(num_frames or c.segment_frames)
    if text_hidden is not None:
        lm.check_text(text_hidden, text_mask)
        B = text_hidden.shape[0]
    elif prompt is not None:
        B = prompt.shape[0]
    else:
        B = 1
    if getattr(c, "n_chroma", 0) > 0:
        if text_hidden is None:      # audiocraft: a None description is T5("") with its mask zeroed
            text_hidden, text_mask = jnp.zeros((B, 1, c.text_dim), jnp.float32), jnp.zeros((B, 1), jnp.int32)
        chroma = lm.check_chroma(chroma, B)
    elif chroma is not None:
        lm.fuse(text_hidden, text_mask, chroma)          # raises: no melody conditioner
    if prompt is None:
        prompt = np.zeros((B, c.n_q, 0), np.int32)
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 3 or prompt.shape[:2] != (B, c.n_q):
        raise ValueError(f"prompt must be int [B={B}, K={c.n_q}, P], got shape {prompt.shape}")
    if prompt.shape[-1] >= T:
        raise ValueError(f"prompt of {prompt.shape[-1]} frames is not shorter than num_frames={T}: "
                         "ask for more frames or shorten the prompt")
    graphdef, state = nnx.split(lm)
    return _generate(graphdef, state, text_hidden, text_mask, prompt, as_key(rng), chroma, config=config, frames=T)
