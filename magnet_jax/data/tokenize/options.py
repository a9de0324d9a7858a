"""The tokenizer's knobs (segmenting, loudness, batching)."""
from __future__ import annotations

import dataclasses

from magnet_jax.data.audio_io import LevelOptions

DEFAULT_NAME = "magnet_codes"   # TFDS dataset name
VERSION = "1.1.0"              # TFDS dataset version (1.1: overlapping segments, tails kept, instrument)


@dataclasses.dataclass(frozen=True)
class TokenizeOptions:
    """Segmenting (:func:`magnet_jax.data.tokenize.segments.plan_segments`), loudness
    (:class:`~magnet_jax.data.audio_io.LevelOptions`) and batching knobs."""
    segment_seconds: float = 60.0        # stored segment length
    overlap_seconds: float | None = None  # consecutive segments overlap by this (windows up to it fit anywhere);
    #                                       None: min(30 s, segment_seconds / 2)
    min_seconds: float = 0.0             # shorter files are skipped (too_short); audiocraft keeps every file
    length_quantum_seconds: float = 1.0  # files shorter than a segment are zero-padded to a multiple of this
    level: LevelOptions = LevelOptions()
    resample_quality: str = "HQ"
    batch_size: int = 8
    read_workers: int = 2          # threads decoding / resampling ahead of the encoder
    max_pending_segments: int = 64  # bound on segments waiting for a full batch (memory)

    def __post_init__(self):
        if self.segment_seconds <= 0:
            raise ValueError("segment_seconds must be > 0")
        if not 0 <= self.overlap < self.segment_seconds:
            raise ValueError("overlap_seconds must be in [0, segment_seconds)")
        if not 0 < self.length_quantum_seconds <= self.segment_seconds:
            raise ValueError("length_quantum_seconds must be in (0, segment_seconds]")
        if not 0 <= self.min_seconds <= self.segment_seconds:
            raise ValueError("min_seconds must be in [0, segment_seconds]")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    @property
    def overlap(self) -> float:
        return min(30.0, self.segment_seconds / 2) if self.overlap_seconds is None else float(self.overlap_seconds)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
