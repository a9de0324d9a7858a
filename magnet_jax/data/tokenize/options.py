"""The tokenizer's knobs (segmenting, loudness, batching)."""
from __future__ import annotations

import dataclasses

from magnet_jax.data.audio_io import LevelOptions

DEFAULT_NAME = "magnet_codes"   # TFDS dataset name
VERSION = "1.0.0"              # TFDS dataset version


@dataclasses.dataclass(frozen=True)
class TokenizeOptions:
    """Segmenting (:func:`magnet_jax.data.tokenize.segments.plan_segments`), loudness
    (:class:`~magnet_jax.data.audio_io.LevelOptions`) and batching knobs."""
    segment_seconds: float = 30.0
    min_seconds: float = 1.0
    length_quantum_seconds: float = 1.0
    level: LevelOptions = LevelOptions()
    resample_quality: str = "HQ"
    batch_size: int = 8
    read_workers: int = 2          # threads decoding / resampling ahead of the encoder
    max_pending_segments: int = 64  # bound on segments waiting for a full batch (memory)

    def __post_init__(self):
        if self.segment_seconds <= 0:
            raise ValueError("segment_seconds must be > 0")
        if not 0 < self.length_quantum_seconds <= self.segment_seconds:
            raise ValueError("length_quantum_seconds must be in (0, segment_seconds]")
        if not 0 <= self.min_seconds <= self.segment_seconds:
            raise ValueError("min_seconds must be in [0, segment_seconds]")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
