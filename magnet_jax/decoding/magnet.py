"""Public MAGNeT generation: inputs -> one jitted program (the model as a ``logits_fn`` + ``decode_loop``).

One ``jax.jit`` per (graphdef, :class:`GenerationConfig`, shapes). The model goes through ``nnx.split``: its
parameters are a jit argument, so new weights do not recompile; neither do new prompts / regions / prompt
lengths (they are padded to ``[B, K, T]`` + a keep mask before the jitted core).

Beyond the reference:

* **Continuation** from a prompt of any length ``P < T``, per item via ``prompt_lens``.
* **Infill**: ``infill_mask`` [B, T] (True = regenerate) with ``init_codes`` [B, K, T]; every position outside
  the region keeps its ``init_codes`` tokens on *all* codebooks, bit-identical. A chunk (``nonoverlap``) is
  generated iff any of its tokens is in the region (for a prompt this is exactly the reference's
  ``n_chunks - P // span_len``); kept tokens inside it are re-imposed.
* **Rescoring** (paper section 3.3): ``rescorer=`` a :class:`~magnet_jax.model.MusicGenLM` and
  ``config.rescorer_weight`` (:mod:`~magnet_jax.decoding.rescoring`); one more forward per step, in the same program.
* **Unconditional**: ``text_hidden=None`` runs the B null rows only (the reference crashes).
  Per item, an all-zero ``text_mask`` row is the null condition as well (CFG then is a no-op).
"""
from __future__ import annotations

import functools

import jax
from flax import nnx

from magnet_jax.decoding._module import as_key
from magnet_jax.decoding.config import GenerationConfig, MusicGenGenerationConfig
from magnet_jax.decoding.inputs import prepare_inputs
from magnet_jax.decoding.loop import decode_loop
from magnet_jax.decoding.model_logits import cfg_logits_fn
from magnet_jax.decoding.rescoring import check_rescorer, rescorer_probs_fn


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "trace", "rescorer_graphdef"))
def _decode(graphdef, config: GenerationConfig, state, text_hidden, text_mask, known, keep, rng, trace=False,
            rescorer_graphdef=None, rescorer_state=None):
    """The jitted program: known int32 [B, K, T] (values at kept positions), keep bool [B, T]; T already usable."""
    c = nnx.merge(graphdef, state).config
    rescore_fn = None
    if rescorer_graphdef is not None:
        coef = MusicGenGenerationConfig().cfg_coef if config.rescorer_cfg_coef is None else config.rescorer_cfg_coef
        rescore_fn = rescorer_probs_fn(rescorer_graphdef, rescorer_state, text_hidden, text_mask, coef)
    codes, tr = decode_loop(cfg_logits_fn(graphdef, state, text_hidden, text_mask), config, known, keep, rng,
                            mask_id=c.mask_id, span_len=c.span_len, trace=trace, rescore_fn=rescore_fn)
    return codes, (tr.to_dict() if tr is not None else None)


def generate_with_trace(lm, text_hidden=None, text_mask=None, *, config: GenerationConfig = GenerationConfig(),
                        rng=None, prompt=None, prompt_lens=None, infill_mask=None, init_codes=None,
                        num_frames=None, num_samples=None, trace=True, rescorer=None):
    """:func:`generate` that also returns a per-step trace (dict of arrays over all ``sum(steps)`` steps):
    ``num_masked`` [N, B] units masked, ``seq_in`` [N, B, T] stage row fed to the model (mask id =
    card), ``seq_out`` [N, B, T] after sampling, ``cfg_coef`` [N], ``temperature`` [N]."""
    text_hidden, text_mask, known, keep = prepare_inputs(lm.config, text_hidden, text_mask, prompt, prompt_lens,
                                                         infill_mask, init_codes, num_frames, num_samples, config)
    graphdef, state = nnx.split(lm)
    resc = {}
    if config.rescoring:                 # otherwise the rescorer is not even traced: plain decoding, bit for bit
        if rescorer is None:
            raise ValueError(f"rescorer_weight={config.rescorer_weight} needs a rescorer: pass rescorer=<MusicGenLM> "
                             "(MagnetPipeline.from_pretrained(id, rescorer=...), tools/generate.py --rescorer=...)")
        check_rescorer(lm.config, rescorer.config)
        resc = dict(zip(("rescorer_graphdef", "rescorer_state"), nnx.split(rescorer)))
    return _decode(graphdef, config, state, text_hidden, text_mask, known, keep, as_key(rng), trace=trace, **resc)


def generate(lm, text_hidden=None, text_mask=None, *, config: GenerationConfig = GenerationConfig(), rng=None,
             prompt=None, infill_mask=None, num_frames=None, prompt_lens=None, init_codes=None,
             num_samples=None, rescorer=None):
    """MAGNeT generation -> int32 codes [B, K, T'] (``T' = span_len * (T // span_len)`` for ``nonoverlap``,
    ``T`` for ``stride1``, as the reference returns them).

    Args:
      lm: :class:`~magnet_jax.model.MagnetLM`.
      text_hidden: float [B, S, E] T5 encoder output, or None for unconditional generation (B from the
        other inputs or ``num_samples``). The null CFG rows are built here (zero hidden, zero mask).
      text_mask: [B, S] (1 = token). An all-zero row is the null condition for that item.
      config: :class:`GenerationConfig` (static: a new config compiles a new program).
      rng: ``jax.random.key`` (or an int seed); step ``g`` (global over stages) uses ``fold_in(rng, g)``.
      prompt: int [B, K, P] with ``P < T``: continuation. The first ``prompt_lens[b]`` frames of item
        ``b`` (default all ``P``) are kept on every codebook and never re-masked.
      infill_mask: bool [B, T], True = regenerate; needs ``init_codes`` int [B, K, T] giving the tokens
        kept (bit-identical, all codebooks) everywhere else. May be combined with ``prompt``.
      num_frames: T, default ``lm.config.segment_frames`` (or ``init_codes.shape[-1]``).
      rescorer: a :class:`~magnet_jax.model.MusicGenLM` sharing the codec and text width, used when
        ``config.rescorer_weight`` makes MAGNeT's weight < 1 (ignored otherwise).

    Bad inputs (shapes, codes outside ``[0, card)`` where kept, non-finite text) raise a one-line ValueError.
    """
    codes, _ = generate_with_trace(lm, text_hidden, text_mask, config=config, rng=rng, prompt=prompt,
                                   prompt_lens=prompt_lens, infill_mask=infill_mask, init_codes=init_codes,
                                   num_frames=num_frames, num_samples=num_samples, trace=False, rescorer=rescorer)
    return codes
