"""The text -> audio half every family's pipeline shares (audiocraft's ``BaseGenModel``): text encoding, audio in
and out through the codec, the batch and prompt of a call, the duration in frames, and ``generate`` /
``continuation`` on top of the family's ``generate_codes``.

Each family's pipeline subclasses :class:`TextToAudioPipeline` (:mod:`~magnet_jax.pipelines.magnet`,
:mod:`~magnet_jax.pipelines.musicgen`, :mod:`~magnet_jax.pipelines.hybrid`) and writes ``generate_codes``; the
constructors ``from_pretrained`` / ``from_config`` / ``load`` are :mod:`magnet_jax.pipelines.load`'s, which picks
the family's class from what the checkpoint or preset says.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Callable, ClassVar, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from magnet_jax.data.audio_io import convert_channels, resample
from magnet_jax.text import tokenize
from magnet_jax.util import user_input

if TYPE_CHECKING:
    from magnet_jax.codec.encodec import Encodec
    from magnet_jax.codec.frame_codec import FrameCodec
    from magnet_jax.codec.stereo import StereoCodec
    from magnet_jax.decoding.config import GenerationConfig, MusicGenGenerationConfig
    from magnet_jax.model.transformer import TransformerLM


# The description a job uses when it is given no text (tools/run.sh, tools/generate.py without --text): one the
# released models were trained to follow. A pipeline whose model was trained on other descriptions (the bundled
# model: magnet_jax.bundled) carries its own (TextToAudioPipeline.example_description).
EXAMPLE_DESCRIPTION = "80s electronic track with melodic synthesizers and a driving beat"


def as_texts(texts):
    """``None`` (unconditional), one bare string (one text, not one per character), or a sequence of strings
    (bytes or numbers are a :class:`~magnet_jax.util.user_input.UserError`, never one clip per element)."""
    return user_input.texts(texts)


class Conditioning(NamedTuple):
    """What a generate call conditions on: T5 states and mask (None: unconditional), the batch size, and the
    prompt codes broadcast to the batch (or None)."""
    hidden: jax.Array | None
    mask: jax.Array | None
    batch: int
    prompt: jax.Array | None


@dataclasses.dataclass
class TextToAudioPipeline:
    lm: TransformerLM
    codec: Encodec | FrameCodec | StereoCodec
    tokenizer: object                   # magnet_jax.text.T5Tokenize
    t5: Callable                        # (ids, mask) -> hidden
    generation: GenerationConfig | MusicGenGenerationConfig
    name: str = ""
    # a description this model was trained to follow, used when a job gives no text (default: the released models')
    example_description: str = EXAMPLE_DESCRIPTION

    # The family pipelines.load.from_config builds when called on this class (None: the one the preset names).
    config_family: ClassVar[str | None] = None

    @classmethod
    def default_generation(cls, kind: str, segment_duration: float):
        """This family's generation defaults for a model of ``kind`` ("music" / "audio") and window (seconds)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.lm.config.frame_rate)

    @property
    def window_seconds(self) -> float:
        return float(self.lm.config.segment_duration)

    # ------------------------------------------------------------------ pieces
    def encode_text(self, texts: Sequence[str | None]):
        """T5 hidden states and mask with the reference semantics (pad to the longest; "" = null)."""
        ids, mask = tokenize(self.tokenizer, list(texts))
        return self.t5(ids, mask), jnp.asarray(mask)

    def encode_audio(self, wav: np.ndarray, sample_rate: int) -> jax.Array:
        """Audio ``[C, N]`` or ``[N]`` at ``sample_rate`` -> codes int32 [1, K, T] (resampled, down-mixed)."""
        wav = np.asarray(wav, np.float32)
        if wav.ndim == 1:
            wav = wav[None]
        if wav.ndim != 2 or wav.shape[1] == 0:
            raise ValueError(f"audio must be [channels, samples] with samples > 0, got shape {wav.shape}")
        if not np.all(np.isfinite(wav)):
            raise ValueError("audio holds NaN or inf samples")
        wav = resample(convert_channels(wav, self.codec.channels), int(sample_rate), self.sample_rate)
        return self.codec.encode(jnp.asarray(wav)[None])

    def condition(self, texts: list | None, num_samples: int | None, prompt) -> Conditioning:
        """The :class:`Conditioning` of a generate call; ``texts=None``: unconditional, ``num_samples`` items
        (default: the prompt's batch, else 1)."""
        if texts is not None:
            if not texts:
                raise ValueError("no text given (use texts=None for unconditional generation)")
            hidden, mask = self.encode_text(texts)
            B = len(texts)
        else:
            hidden = mask = None
            B = user_input.count("num_samples", num_samples) if num_samples is not None else (
                prompt.shape[0] if prompt is not None else 1)
        if prompt is not None:
            prompt = jnp.broadcast_to(jnp.asarray(prompt, jnp.int32), (B,) + tuple(prompt.shape[1:]))
        return Conditioning(hidden, mask, B, prompt)

    def decode_codes(self, codes) -> np.ndarray:
        return np.asarray(self.codec.decode(jnp.asarray(codes)))

    def _config(self, overrides: dict):
        """The pipeline's generation config with ``overrides`` (one-line error naming unknown fields)."""
        if not overrides:
            return self.generation
        known = {f.name for f in dataclasses.fields(self.generation)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"unknown generation parameter(s) {bad} for {type(self).__name__}; known: {sorted(known)}")
        return self.generation.replace(**overrides)

    def seconds_to_frames(self, seconds: float, what: str = "duration") -> int:
        """``seconds`` in frames; a one-line error naming ``what`` when it is not a finite number of at least one
        frame."""
        s = float(seconds)
        n = int(round(s * self.frame_rate)) if math.isfinite(s) else 0
        if n < 1:
            raise ValueError(f"{what} {seconds!r} s: give a finite number of seconds, at least one frame "
                             f"({1 / self.frame_rate:g} s)")
        return n

    def check_duration(self, duration: float) -> int:
        """``duration`` in frames (:meth:`seconds_to_frames`)."""
        return self.seconds_to_frames(duration, "duration")

    # ------------------------------------------------------------------ generation
    def lm_frames(self, config=None) -> int:
        """The most frames one LM call yields: the trained window."""
        return self.lm.config.segment_frames

    def generate_codes(self, texts: Sequence[str | None] | str | None, *, duration: float | None = None,
                       seed: int = 0, **kw) -> jax.Array:
        """Codes int32 [B, K, T] for ``duration`` seconds (default: the window): the family's generation."""
        raise NotImplementedError

    def _audio(self, codes, duration: float | None) -> np.ndarray:
        """Waveforms float32 [B, C, N] of ``codes``, trimmed to ``duration`` seconds when given."""
        wav = self.decode_codes(codes)
        if duration is not None:
            wav = wav[..., :int(round(duration * self.sample_rate))]
        return wav

    def generate(self, texts: Sequence[str | None] | None, *, duration: float | None = None, seed: int = 0,
                 **kw) -> np.ndarray:
        """Waveforms float32 [B, C, N] at :attr:`sample_rate` (N = duration x sample rate, trimmed)."""
        return self._audio(self.generate_codes(texts, duration=duration, seed=seed, **kw), duration)

    def continuation(self, prompt_wav, prompt_sample_rate: int, texts: Sequence[str | None] | None, *,
                     duration: float | None = None, seed: int = 0, **kw) -> np.ndarray:
        """Continue an audio prompt: the output starts with the (re-synthesised) prompt."""
        prompt = self.encode_audio(prompt_wav, prompt_sample_rate)
        return self.generate(texts, duration=duration, seed=seed, prompt=prompt, **kw)

    def infill(self, wav, sample_rate: int, texts: Sequence[str | None] | None, *, start: float, end: float,
               seed: int = 0, **kw) -> np.ndarray:
        """Regenerate ``[start, end)`` seconds of ``wav``: a masked model's (MAGNeT) ability; refused here."""
        raise ValueError(f"infill needs a masked (MAGNeT) model; a {type(self).__name__} only continues a prompt")
