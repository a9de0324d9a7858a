"""Hybrid-MAGNeT generation: an autoregressive prefix, then MAGNeT decoding of the rest (paper §3.4).

1. **Prefix**: :func:`magnet_jax.decoding.musicgen.generate` (KV cache, delay pattern, CFG, MusicGen sampling) on the
   hybrid LM (a :class:`~magnet_jax.model.MusicGenLM`) for ``P = prefix_frames`` frames on every codebook, as
   the branch's ``ar_generate(max_gen_len=P)``.
2. **Rest**: :func:`magnet_jax.decoding.decode_loop` with the prefix as a prompt (kept bit-identical on every
   codebook, never re-masked) and the hybrid LM under the semi-autoregressive mask with prompt step ``P`` as
   its ``logits_fn``.

Deviation from the branch (whose ``_generate_magnet`` cannot run: it feeds non-delayed codes to a delayed-layout
mask): the rest is decoded as the model is trained (:mod:`magnet_jax.objectives.hybrid`): the
delayed sequence, rows ``< P`` causal, and for stage ``s`` the codebooks ``k > s`` hidden (mask id) from
frame ``P - k`` on, as in training, although the prefix knows them up to frame ``P``.

    generate(lm, text_hidden [B, S, E] | None, text_mask, *, config=GenerationConfig(...),
             ar_config=MusicGenGenerationConfig(...), prefix_frames=P, rng=key, num_frames=T) -> codes [B, K, T']
"""
from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from magnet_jax.decoding import guidance
from magnet_jax.decoding._module import as_key, rebuilder
from magnet_jax.decoding.config import GenerationConfig, MusicGenGenerationConfig
from magnet_jax.decoding.inputs import prepare_inputs
from magnet_jax.decoding.loop import LogitsFn, decode_loop
from magnet_jax.decoding.musicgen import generate as ar_generate
from magnet_jax.decoding.spans import units_for
from magnet_jax.model.hybrid import HybridMagnetLM

# The autoregressive prefix when none is asked for (seconds). The paper's hybrid models generate "the first
# few seconds" autoregressively; the branch's generate step reads an (undefined) max_prompt_len.
DEFAULT_PREFIX_SECONDS = 3.0


def hybrid_logits_fn(graphdef, state, text_hidden, text_mask, prefix_frames) -> LogitsFn:
    """``logits_fn`` of a :class:`HybridMagnetLM` (``nnx.split``) for prompt step ``prefix_frames`` [B], with
    classifier-free guidance as MAGNeT's (one 2B batch of pairs, :mod:`magnet_jax.decoding.guidance`; null = zero
    text, zero mask)."""
    model = rebuilder(graphdef, state)   # rebuilt per call: the layer scan refuses outer-level variables
    lm = model()
    c = lm.config
    P = jnp.asarray(prefix_frames, jnp.int32)
    if text_hidden is not None:
        cond = lm.project_text(text_hidden, text_mask)
        cond2, mask2 = guidance.with_null(cond), guidance.with_null(text_mask)

    def fn(codes, stage: int, coef):
        B, K, T = codes.shape
        k = jnp.arange(K)[None, :, None]
        hide = (k > stage) & (jnp.arange(T)[None, None, :] >= P[:, None, None] - k)   # as the training input
        inp = jnp.where(hide, c.mask_id, codes)
        m = model()
        st = jnp.full((B,), stage, jnp.int32)
        if text_hidden is None:
            return m.frame_logits(inp, jnp.zeros((B, 1, c.dim), m.compute_dtype), None, P, st)[:, stage]
        both = m.frame_logits(guidance.pairs(inp), cond2, mask2, guidance.pairs(P), guidance.pairs(st))[:, stage]
        return guidance.guide(both, coef)

    return fn


@functools.partial(jax.jit, static_argnames=("graphdef", "config"))
def _decode(graphdef, config: GenerationConfig, state, text_hidden, text_mask, known, keep, rng, prefix_frames):
    c = nnx.merge(graphdef, state).config
    fn = hybrid_logits_fn(graphdef, state, text_hidden, text_mask, prefix_frames)
    codes, _ = decode_loop(fn, config, known, keep, rng, mask_id=c.mask_id, span_len=c.span_len)
    return codes


def generate(lm: HybridMagnetLM, text_hidden=None, text_mask=None, *, config: GenerationConfig = GenerationConfig(),
             ar_config: MusicGenGenerationConfig = MusicGenGenerationConfig(), prefix_frames: int, rng=None,
             num_frames: int | None = None, num_samples: int | None = None):
    """Codes int32 [B, K, T'] (``T'`` as :func:`magnet_jax.decoding.magnet.generate`: ``nonoverlap`` trims to whole
    spans); frames ``< prefix_frames`` are the autoregressive prefix on every codebook.

    ``rng``: a key or int seed; the prefix uses ``fold_in(rng, 0)``, the rest ``fold_in(rng, 1)``.
    ``text_hidden=None``: unconditional (``num_samples`` items, default 1).
    """
    if not isinstance(lm, HybridMagnetLM):
        raise ValueError(f"hybrid generation needs a HybridMagnetLM, got {type(lm).__name__} (a MAGNeT checkpoint "
                         f"is generated with magnet_jax.decoding.magnet.generate)")
    c = lm.config
    T = int(num_frames or c.segment_frames)
    usable = units_for(config.span_arrangement, c.span_len).usable(T, c.span_len)
    if isinstance(prefix_frames, bool) or not isinstance(prefix_frames, numbers.Integral) \
            or not 1 <= prefix_frames < usable:
        raise ValueError(f"prefix_frames must be an integer in [1, {usable}) (the autoregressive prefix is shorter "
                         f"than the {usable} frames generated), got {prefix_frames!r}")
    if text_hidden is not None:
        lm.check_text(text_hidden, text_mask)
        B = text_hidden.shape[0]
    else:
        B = int(num_samples or 1)
    key = as_key(rng)
    prefix = ar_generate(lm, text_hidden, text_mask, config=ar_config, rng=jax.random.fold_in(key, 0),
                         num_frames=int(prefix_frames), prompt=np.zeros((B, c.n_q, 0), np.int32))
    text_hidden, text_mask, known, keep = prepare_inputs(c, text_hidden, text_mask, prefix, None, None, None, T,
                                                         None if text_hidden is not None else B, config)
    graphdef, state = nnx.split(lm)
    return _decode(graphdef, config, state, text_hidden, text_mask, known, keep, jax.random.fold_in(key, 1),
                   jnp.full((B,), int(prefix_frames), jnp.int32))
