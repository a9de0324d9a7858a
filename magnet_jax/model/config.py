"""MagnetConfig: the hyper-parameters of a MAGNeT LM (frozen, hashable: usable as a jit static arg)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class MagnetConfig:
    """Architecture of the MAGNeT transformer LM (audiocraft ``MagnetLMModel`` semantics).

    Defaults are the released ``magnet-small-10secs`` model. ``dtype`` is the *compute* dtype;
    parameters are always float32 (master weights); logits are returned in float32.
    """
    n_q: int = 4                       # codebooks K
    card: int = 2048                   # codebook size; the mask token id is ``card``
    dim: int = 1024
    num_heads: int = 16
    num_layers: int = 24
    hidden_scale: int = 4              # FFN width = hidden_scale * dim
    text_dim: int = 768                # T5 hidden size (t5-base 768, t5-large 1024)
    subcodes_context: int = 5          # stage > 0 self-attention band: |t_q - t_k| <= subcodes_context
    span_len: int = 3
    frame_rate: int = 50
    segment_duration: float = 10.0     # seconds; the training / generation window
    max_period: float = 10000.0        # sinusoidal positions
    layer_norm_eps: float = 1e-5
    mask_text_padding: bool = False    # False = reference: padded (zero) text keys take part in softmax
    dtype: str = "float32"             # compute dtype: "float32" or "bfloat16"
    remat: bool = False                # rematerialise each layer in the backward pass
    scan_unroll: int = 1               # nnx.scan unroll factor over layers

    @property
    def mask_id(self) -> int:
        return self.card

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def ffn_dim(self) -> int:
        return self.hidden_scale * self.dim

    @property
    def segment_frames(self) -> int:
        return int(round(self.frame_rate * self.segment_duration))

    def __post_init__(self):
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.dim % 2:
            raise ValueError(f"dim={self.dim} must be even (sinusoidal positions)")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")

    def replace(self, **kw) -> "MagnetConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MagnetConfig":
        """Builds from a mapping (e.g. ``config.model`` of an ml_collections config); unknown keys are an error."""
        return strict_from_dict(cls, d)


def strict_from_dict(cls, d: Mapping[str, Any]):
    """``cls(**d)`` for a dataclass, refusing unknown keys by name (a typo in a config must not pass)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown} (known: {sorted(names)})")
    return cls(**dict(d))
