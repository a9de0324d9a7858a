"""HybridMagnetLM: Hybrid-MAGNeT as one model (MAGNeT paper §3.4; audiocraft branch ``hybrid_magnet`` @ c44e943).

The shared :class:`~magnet_jax.model.transformer.TransformerLM` (same parameters as MAGNeT / MusicGen) run on
the MusicGen *delayed* sequence (:mod:`magnet_jax.model.delay_pattern`, delays ``0..K-1``, ``S = T + K`` steps;
row ``r`` predicts step ``r + 1``, i.e. frame ``r - k`` of codebook ``k``) under the semi-autoregressive mask
:func:`semi_autoregressive_mask`: causal before a per-sample prompt step, MAGNeT's restricted context for the
stage being predicted after it. It is a :class:`~magnet_jax.model.MusicGenLM`, so the causal forward and the
KV-cached decode (:func:`magnet_jax.decoding.musicgen.generate`) generate the autoregressive prefix.

Public API::

    lm(codes [B, K, T] (mask id = card), text_hidden, text_mask, prompt_step=[B], stage=[B]) -> [B, K, T, card]
    lm.frame_logits(codes, cond, text_mask, prompt_step, stage)   # with an already projected text
    lm.causal(sequence [B, K, S], text_hidden, text_mask) -> [B, K, S, card]   # MusicGenLM.__call__
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from magnet_jax.model import delay_pattern as pattern
from magnet_jax.model.config import MagnetConfig
from magnet_jax.model.musicgen import MusicGenLM

__all__ = ["HybridMagnetConfig", "HybridMagnetLM", "semi_autoregressive_mask"]


@dataclasses.dataclass(frozen=True)
class HybridMagnetConfig(MagnetConfig):
    """MAGNeT's fields plus the delay pattern of the autoregressive part. The branch's mask places the
    stage's block ``stage`` rows down, so the delays must be ``0..K-1`` (audiocraft's default delay pattern)."""
    segment_duration: float = 30.0     # the released hybrid models are 30 s (hybrid_magnet_32khz.yaml)
    delays: tuple[int, ...] = (0, 1, 2, 3)

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "delays", tuple(int(d) for d in self.delays))
        if self.delays != tuple(range(self.n_q)):
            raise ValueError(f"Hybrid-MAGNeT needs delays 0..{self.n_q - 1} (one step per codebook), "
                             f"got {self.delays}")

    @property
    def max_delay(self) -> int:
        return max(self.delays)


def semi_autoregressive_mask(frames: int, n_q: int, prompt_step, stage, subcodes_context: int) -> jnp.ndarray:
    """bool [B, 1, S, S] (True = may attend), ``S = frames + n_q``, per sample ``prompt_step`` [B], ``stage`` [B]:

    * rows ``r < prompt_step``: causal (``c <= r``), the autoregressive prefix;
    * rows ``stage <= r < stage + frames`` (the rows predicting the stage codebook): keys ``1 + stage <= c <
      1 + stage + frames`` (that codebook's input steps), for ``stage > 0`` (and ``subcodes_context >= 0``)
      only ``|r + 1 - c| <= subcodes_context`` (MAGNeT's restricted band, in frames of the stage codebook);
    * other rows (before / after the stage's block; in no loss, but their keys feed later layers): every key.

    = the branch's ``_stage_attn_mask`` (block placement, placeholder rows) merged by ``compute_attn_mask`` /
    ``_apply_nar_masks`` on the prompt step, without its per-head repeat and multiple-of-8 padding.
    """
    S = frames + n_q
    r = jnp.arange(S)[:, None]
    c = jnp.arange(S)[None, :]
    p = jnp.asarray(prompt_step, jnp.int32).reshape(-1, 1, 1)
    s = jnp.asarray(stage, jnp.int32).reshape(-1, 1, 1)
    in_block = (r >= s) & (r < s + frames)
    cols = (c >= 1 + s) & (c < 1 + s + frames)
    band = (s == 0) | (subcodes_context < 0) | (jnp.abs(r + 1 - c) <= subcodes_context)
    nar = jnp.where(in_block, cols & band, True)
    return jnp.where(r < p, c <= r, nar)[:, None]


def _per_sample(x, batch: int) -> jnp.ndarray:
    return jnp.broadcast_to(jnp.asarray(x, jnp.int32).reshape(-1), (batch,))


class HybridMagnetLM(MusicGenLM):
    config: HybridMagnetConfig

    def causal(self, sequence, text_hidden, text_mask):
        """The plain causal forward of the delayed ``sequence`` (= ``prompt_step >= S``)."""
        return MusicGenLM.__call__(self, sequence, text_hidden, text_mask)

    def sequence_logits(self, sequence, cond, text_mask, prompt_step, stage):
        """Logits float32 [B, K, S, card] of the delayed ``sequence`` [B, K, S] under the semi-AR mask."""
        c = self.config
        seq = self.check_codes(sequence)
        B, _, S = seq.shape
        mask = semi_autoregressive_mask(S - c.n_q, c.n_q, _per_sample(prompt_step, B), _per_sample(stage, B),
                                        c.subcodes_context)
        return self.all_logits(self.run_layers(self.embed_codes(seq), cond, mask, self.text_key_mask(text_mask)))

    def frame_logits(self, codes, cond, text_mask, prompt_step, stage):
        """Logits float32 [B, K, T, card] predicting ``codes[:, k, t]`` (the branch's ``compute_predictions``):
        ``codes`` [B, K, T] (masked positions hold the mask id) -> delayed sequence of ``T + K`` steps ->
        semi-AR forward -> reverted to frames."""
        c = self.config
        codes = self.check_codes(codes)
        T = codes.shape[-1]
        seq = pattern.build_sequence(codes, c.delays, c.mask_id)                      # [B, K, T + K]
        return pattern.revert_logits(self.sequence_logits(seq, cond, text_mask, prompt_step, stage), c.delays, T)

    def __call__(self, codes, text_hidden, text_mask, prompt_step=0, stage=0):
        """Logits float32 [B, K, T, card] (see :meth:`frame_logits`); ``prompt_step`` / ``stage``: int or [B]."""
        self.check_text(text_hidden, text_mask)
        return self.frame_logits(codes, self.project_text(text_hidden, text_mask), text_mask, prompt_step, stage)
