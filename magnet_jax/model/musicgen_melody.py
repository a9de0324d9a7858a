"""MusicGen-melody (audiocraft ``LMModel`` with a ``ChromaStemConditioner`` named ``self_wav``).

The MusicGen LM whose input sequence is preceded by its conditions (audiocraft ``ConditionFuser``
``prepend``): ``[output_proj(chroma) (Tc frames), output_proj(T5) * mask (S_txt tokens), codes]``, with the
positions counted from the first prefix frame and the logits of the code steps only. The released melody
models prepend the text too and have no cross-attention (``fuser.cross: []``); ``text_fuse='cross'`` keeps
the T5 in cross-attention. Without cross-attention the layers' cross-attention weights are unused: the
keys are one zero vector (no biases -> a zero contribution) and the loader fills them with zeros.

    lm(sequence [B, K, S], text_hidden [B, S_txt, E], text_mask [B, S_txt], chroma [B, Tc, n_chroma])
        -> logits float32 [B, K, S, card]

``chroma`` comes from :func:`magnet_jax.model.chroma.extract_chroma` matched to :attr:`chroma_frames`
(what ``MusicGen.get_pretrained`` forces: ``match_len_on_eval``, no masking).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from magnet_jax.model.chroma import chroma_length, null_chroma
from magnet_jax.model.config import MusicGenConfig
from magnet_jax.model.layers import dense, uniform_fan_in
from magnet_jax.model.musicgen import MusicGenLM
from magnet_jax.util import param

__all__ = ["MusicGenMelodyConfig", "MusicGenMelodyLM"]


@dataclasses.dataclass(frozen=True)
class MusicGenMelodyConfig(MusicGenConfig):
    """``conditioners.self_wav.chroma_stem.*`` of the xp.cfg (released: 12 bins, radix2_exp 14, argmax) and
    where the T5 goes (``fuser``: released ``prepend``)."""
    n_chroma: int = 12
    chroma_radix2_exp: int = 14
    chroma_argmax: bool = True
    chroma_sample_rate: int = 32000
    text_fuse: str = "prepend"          # "prepend" (released melody) | "cross"

    def __post_init__(self):
        super().__post_init__()
        if self.text_fuse not in ("prepend", "cross"):
            raise ValueError(f"text_fuse must be 'prepend' or 'cross', got {self.text_fuse!r}")

    @property
    def chroma_frames(self) -> int:
        """The conditioner's ``chroma_len``: chroma frames of one training window (235 for 30 s at 32 kHz)."""
        return chroma_length(self.chroma_sample_rate, self.segment_duration, self.chroma_radix2_exp)


class MusicGenMelodyLM(MusicGenLM):
    config: MusicGenMelodyConfig

    def __init__(self, config: MusicGenMelodyConfig, *, rngs: nnx.Rngs | None = None):
        rngs = nnx.Rngs(0) if rngs is None else rngs
        super().__init__(config, rngs=rngs)
        n, d = config.n_chroma, config.dim
        self.chroma_kernel = param(uniform_fan_in(rngs.params(), (n, d), n), ("text_embed", "embed"))
        self.chroma_bias = param(uniform_fan_in(rngs.params(), (d,), n), ("embed",))

    def project_chroma(self, chroma):
        """The conditioner's ``output_proj``: [B, Tc, n_chroma] -> [B, Tc, dim] (compute dtype)."""
        dt = self.compute_dtype
        return dense(jnp.asarray(chroma, jnp.float32), self.chroma_kernel[...], dt) + self.chroma_bias[...].astype(dt)

    def null_chroma(self, batch: int):
        c = self.config
        return null_chroma(batch, c.chroma_frames, c.n_chroma, c.chroma_argmax)

    def check_chroma(self, chroma, batch: int):
        c = self.config
        if chroma is None:
            return self.null_chroma(batch)
        chroma = jnp.asarray(chroma, jnp.float32)
        if chroma.shape != (batch, c.chroma_frames, c.n_chroma):
            raise ValueError(f"chroma must be float [B={batch}, Tc={c.chroma_frames}, {c.n_chroma}] (extract_chroma + "
                             f"match_length), got shape {chroma.shape}")
        return chroma

    def fuse(self, text_hidden, text_mask, chroma=None):
        """(prefix [B, P, dim], cross-attention cond [B, S, dim], its text mask or None)."""
        B = text_hidden.shape[0]
        pre = [self.project_chroma(self.check_chroma(chroma, B))]
        text = self.project_text(text_hidden, text_mask)
        if self.config.text_fuse == "cross":
            return pre[0], text, text_mask
        return jnp.concatenate(pre + [text], axis=1), jnp.zeros((B, 1, self.config.dim), text.dtype), None

    def __call__(self, sequence, text_hidden, text_mask, chroma=None):
        """Logits float32 [B, K, S, card]; ``chroma=None``: no melody (the null chroma, as audiocraft)."""
        self.check_text(text_hidden, text_mask)
        prefix, cond, mask = self.fuse(text_hidden, text_mask, chroma)
        return self.forward_cond(sequence, cond, mask, prefix=prefix)
