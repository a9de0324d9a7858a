"""Static architecture description of an EnCodec model (SEANet autoencoder + residual VQ).

Everything here is a plain Python value: the config fixes every array shape, so the jitted
encode / decode programs depend only on it and on the input length.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SeanetConfig:
    """One side (encoder or decoder) of the SEANet autoencoder.

    ``ratios`` are given in *decoder* (upsampling) order, as in every reference implementation;
    the encoder downsamples with them reversed.
    """
    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    causal: bool = False
    pad_mode: str = "reflect"          # 'reflect' | 'constant' | 'replicate' | 'circular'
    norm: str = "weight_norm"          # 'weight_norm' | 'time_group_norm' | 'none'
    true_skip: bool = True             # identity shortcut in residual blocks (else a 1x1 conv)
    compress: int = 2
    lstm: int = 2                      # number of LSTM layers (0: no LSTM)
    disable_norm_outer_blocks: int = 0  # audiocraft: no norm on the N outermost blocks
    trim_right_ratio: float = 1.0      # decoder only, causal transposed convs
    final_activation: str | None = None  # decoder only, e.g. 'Tanh'
    activation_alpha: float = 1.0      # ELU alpha

    def __post_init__(self):
        object.__setattr__(self, "ratios", tuple(int(r) for r in self.ratios))
        if self.norm not in ("weight_norm", "time_group_norm", "none"):
            raise ValueError(f"unsupported SEANet norm {self.norm!r}")
        if self.pad_mode not in ("reflect", "constant", "replicate", "circular", "zero"):
            raise ValueError(f"unsupported pad_mode {self.pad_mode!r}")
        if self.norm == "time_group_norm" and self.causal:
            raise ValueError("time_group_norm is not causal")
        if not self.causal and self.trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1 only makes sense for causal models")

    @property
    def hop_length(self) -> int:
        return int(math.prod(self.ratios))


@dataclass(frozen=True)
class CodecConfig:
    """A whole EnCodec model.

    ``num_codebooks`` is the number of active RVQ levels used by :meth:`Encodec.encode`;
    ``total_codebooks`` how many the checkpoint holds. ``renormalize`` divides the input by its
    RMS volume (audiocraft ``renormalize`` / encodec ``normalize``); ``segment`` (seconds) and
    ``overlap`` describe the encodec-package / HF 48 kHz segment-wise coding
    (:meth:`Encodec.encode_segments`).
    """
    sample_rate: int = 32000
    encoder: SeanetConfig = field(default_factory=SeanetConfig)
    decoder: SeanetConfig = field(default_factory=SeanetConfig)
    total_codebooks: int = 4
    num_codebooks: int = 4
    bins: int = 2048
    renormalize: bool = False
    segment: float | None = None
    overlap: float = 0.01
    name: str = "encodec"

    def __post_init__(self):
        if self.encoder.hop_length != self.decoder.hop_length:
            raise ValueError("encoder and decoder hop lengths differ")
        if self.encoder.channels != self.decoder.channels:
            raise ValueError("encoder and decoder channel counts differ")
        if self.encoder.dimension != self.decoder.dimension:
            raise ValueError("encoder and decoder latent dimensions differ")
        if not 1 <= self.num_codebooks <= self.total_codebooks:
            raise ValueError(f"num_codebooks={self.num_codebooks} not in [1, {self.total_codebooks}]")

    @property
    def hop_length(self) -> int:
        return self.encoder.hop_length

    @property
    def channels(self) -> int:
        return self.encoder.channels

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def replace(self, **kw) -> "CodecConfig":
        return dataclasses.replace(self, **kw)
