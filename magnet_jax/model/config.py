"""LM configs (frozen, hashable: usable as jit static args): the shared transformer fields, MAGNeT's
and MusicGen's. Fields marked ``runtime`` (compute dtype, remat, ...) are how a model is *run*, not what
it *is*: loaders accept them as overrides and checkpoints compare only the architecture fields."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from magnet_jax.util import strict_from_dict

_RUNTIME = {"runtime": True}
ATTENTION_IMPLS = ("auto", "xla", "dot_product_attention", "splash", "pallas")   # see magnet_jax/model/attention.py


def _runtime(default):
    return dataclasses.field(default=default, metadata=_RUNTIME)


POSITIONAL_EMBEDDINGS = ("sin", "rope", "sin_rope")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """The transformer shared by MAGNeT and MusicGen (audiocraft ``LMModel``, pre-norm, no biases).

    Defaults are the released small models. ``dtype`` is the *compute* dtype: parameters, the residual
    stream and the logits stay float32 (as under audiocraft's autocast)."""
    n_q: int = 4                       # codebooks K
    card: int = 2048                   # codebook size; the special (mask / pad) token id is ``card``
    dim: int = 1024
    num_heads: int = 16
    num_layers: int = 24
    hidden_scale: int = 4              # FFN width = hidden_scale * dim
    text_dim: int = 768                # T5 hidden size (t5-base 768, t5-large 1024)
    frame_rate: int = 50
    segment_duration: float = 10.0     # seconds; the training / generation window
    max_period: float = 10000.0        # sinusoidal / rotary positions
    # audiocraft ``transformer_lm.positional_embedding``: "sin" (a sinusoid added to the input, the released
    # models), "rope" (rotary q / k in every self-attention) or "sin_rope" (both); ``positional_scale`` scales
    # the sinusoid and mixes the rotation with the identity (``rotation * scale + 1 - scale``), as audiocraft
    positional_embedding: str = "sin"
    positional_scale: float = 1.0
    layer_norm_eps: float = 1e-5
    # False = reference semantics: text keys past the longest text of the batch are masked, shorter rows'
    # padded (zero) keys inside it take part in the softmax (audiocraft pads each batch to its longest
    # text). True = every padded key is masked (for models trained here with that choice).
    mask_text_padding: bool = _runtime(False)
    dtype: str = _runtime("float32")   # compute dtype: "float32", "bfloat16" or "float16"
    remat: bool = _runtime(False)      # rematerialise each layer in the backward pass
    scan_unroll: int = _runtime(1)     # nnx.scan unroll factor over layers
    # True: one nnx.scan over the stacked layers (compile time independent of depth); False: a Python loop over
    # per-layer slices (compiles each layer; no per-layer dynamic-slices / stacked residuals): transformer.over_layers
    scan_layers: bool = _runtime(True)
    # "xla" (default, the parity reference), "dot_product_attention" (jax.nn; cuDNN flash attention on GPU),
    # "splash" / "pallas" (TPU Pallas kernel), "auto" (the best this backend runs): magnet_jax/model/attention.py
    attention_impl: str = _runtime("xla")

    @property
    def mask_id(self) -> int:
        return self.card

    @property
    def rotary(self) -> bool:
        """Rotary q / k in the self-attention ("rope", "sin_rope")."""
        return self.positional_embedding in ("rope", "sin_rope")

    @property
    def input_sinusoid(self) -> bool:
        """A sinusoid added to the input ("sin", "sin_rope")."""
        return self.positional_embedding in ("sin", "sin_rope")

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
        if self.positional_embedding not in POSITIONAL_EMBEDDINGS:
            raise ValueError(f"positional_embedding must be one of {', '.join(POSITIONAL_EMBEDDINGS)}, "
                             f"got {self.positional_embedding!r}")
        if self.rotary and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head dim, got {self.head_dim}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, got {self.attention_impl!r}")

    @classmethod
    def runtime_fields(cls) -> tuple[str, ...]:
        """Names of the run-time fields (overridable at load time; not part of the architecture)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("runtime"))

    def architecture(self) -> dict[str, Any]:
        """``to_dict()`` without the run-time fields: what must match between a checkpoint and a config."""
        skip = set(self.runtime_fields())
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """Builds from a mapping (e.g. ``config.model`` of an ml_collections config); unknown keys are an error."""
        return strict_from_dict(cls, d)


@dataclasses.dataclass(frozen=True)
class MagnetConfig(LMConfig):
    """MAGNeT (audiocraft ``MagnetLMModel``): non-causal, restricted context for stages > 0."""
    subcodes_context: int = 5          # stage > 0 self-attention band: |t_q - t_k| <= subcodes_context
    span_len: int = 3


@dataclasses.dataclass(frozen=True)
class MusicGenConfig(LMConfig):
    """MusicGen (audiocraft ``LMModel``, ``transformer_lm``): causal, codebook delay pattern
    (``delays[k]`` steps for codebook k; stereo models: 8 codebooks ``[0, 0, 1, 1, 2, 2, 3, 3]``)."""
    segment_duration: float = 30.0
    delays: tuple[int, ...] = (0, 1, 2, 3)

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "delays", tuple(int(d) for d in self.delays))
        if len(self.delays) != self.n_q or list(self.delays) != sorted(self.delays) or min(self.delays) < 0:
            raise ValueError(f"delays={self.delays} must be {self.n_q} sorted non-negative ints (one per codebook)")

    @property
    def max_delay(self) -> int:
        return max(self.delays)
