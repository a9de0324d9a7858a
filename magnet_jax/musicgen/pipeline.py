"""MusicGenPipeline: text -> music with the autoregressive MusicGen LM (T5 -> MusicGen decode -> EnCodec).

The sibling of :class:`~magnet_jax.pipeline.MagnetPipeline` behind the same ``from_pretrained`` (the
checkpoint's ``xp.cfg`` ``lm_model: transformer_lm`` selects it); text encoding, audio I/O, ``generate`` and
``continuation`` are shared, only the codes generation differs.

Long-form as audiocraft's ``BaseGenModel.generate_tokens``: beyond the window, windows of at most the
window's length, each continuing the last ``window - extend_stride`` seconds (default stride 18 s of a 30 s
window) and adding ``extend_stride`` new seconds.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from magnet_jax.musicgen.config import MusicGenGenerationConfig
from magnet_jax.musicgen.generate import generate as _generate
from magnet_jax.pipeline import MagnetPipeline, _as_texts


@dataclasses.dataclass
class MusicGenPipeline(MagnetPipeline):
    generation: MusicGenGenerationConfig = dataclasses.field(default_factory=MusicGenGenerationConfig)

    @classmethod
    def from_config(cls, name: str = "tiny", seed: int = 0) -> "MusicGenPipeline":
        """Random-init MusicGen pipeline with the architecture of config ``name`` (the packaged tiny text
        stack and a random EnCodec), for tests, demos and benchmarks."""
        from flax import nnx

        from magnet_jax.model import MusicGenConfig, MusicGenLM
        base = MagnetPipeline.from_config(name, seed)
        shared = {f: getattr(base.lm.config, f) for f in MusicGenConfig.__dataclass_fields__
                  if f in base.lm.config.__dataclass_fields__}
        lm = MusicGenLM(MusicGenConfig(**shared), rngs=nnx.Rngs(seed))
        return cls(lm, base.codec, base.tokenizer, base.t5, MusicGenGenerationConfig(), name=f"musicgen-config:{name}")

    def lm_frames(self, config=None) -> int:
        return self.lm.config.segment_frames

    def _config(self, overrides: dict) -> MusicGenGenerationConfig:
        return self.generation.replace(**overrides) if overrides else self.generation

    def generate_codes(self, texts: Sequence[str | None] | str | None, *, duration: float | None = None,
                       seed: int = 0, num_samples: int | None = None, prompt=None, extend_stride: float | None = None,
                       long_form: bool = True, progress=None, init_codes=None, infill_mask=None,
                       **overrides) -> jax.Array:
        """Codes int32 [B, K, T] for ``duration`` seconds (default: the window); ``prompt`` codes [B or 1, K, P]
        are continued (and kept at the start). Generation parameters as :class:`MusicGenGenerationConfig`."""
        if init_codes is not None or infill_mask is not None:
            raise ValueError("infill needs a masked (MAGNeT) model; MusicGen only continues a prompt")
        cfg = self._config({**overrides, **({"extend_stride": extend_stride} if extend_stride else {})})
        texts = _as_texts(texts)
        total = self.check_duration(self.window_seconds if duration is None else duration)
        hidden, mask, B, prompt = self.condition(texts, num_samples, prompt)
        if prompt is not None and prompt.shape[-1] >= total:
            raise ValueError(f"the prompt ({prompt.shape[-1]} frames) is not shorter than the output ({total})")
        key = jax.random.key(seed)
        window = self.lm.config.segment_frames

        def run(n, rng, prompt):
            return _generate(self.lm, hidden, mask, config=cfg, rng=rng, num_frames=n, prompt=prompt)
        if total <= window:
            return run(total, key, prompt)
        if not long_form:
            raise ValueError(f"duration {total / self.frame_rate:g} s is beyond the model's {self.window_seconds:g} s "
                             "window; enable long-form generation")
        stride = int(self.frame_rate * cfg.extend_stride)
        if not 0 < stride < window:
            raise ValueError(f"extend_stride must be in (0, {self.window_seconds:g}) seconds, got {cfg.extend_stride}")
        pieces, offset, i = ([] if prompt is None else [prompt]), 0, 0
        plen = 0 if prompt is None else prompt.shape[-1]
        while offset + plen < total:   # audiocraft BaseGenModel.generate_tokens, in frames
            n = min(total - offset, window)
            out = run(n, jax.random.fold_in(key, i), prompt)
            pieces.append(out if prompt is None else out[..., prompt.shape[-1]:])
            prompt = out[..., stride:]
            plen, offset, i = prompt.shape[-1], offset + stride, i + 1
        return jnp.concatenate(pieces, axis=-1)[..., :total]

    def infill(self, *a, **k):
        raise ValueError("infill needs a masked (MAGNeT) model; MusicGen only continues a prompt")
