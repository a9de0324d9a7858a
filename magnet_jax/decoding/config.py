"""The decoding knobs (audiocraft names), the one definition of their defaults: ``GenerationConfig`` (MAGNeT)
and ``MusicGenGenerationConfig`` (MusicGen, ``MusicGen.set_generation_params``)."""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping

from magnet_jax.util import strict_from_dict

ARRANGEMENTS = ("nonoverlap", "stride1")
SCORINGS = ("max", "prod")
KINDS = ("music", "audio")
WEIGHT_SIDES = ("magnet", "rescorer")


def first_stage_steps(segment_duration: float) -> int:
    """Decoding steps of the first codebook for a model with this window: ``int(20 * duration // 10)``.

    Policy (differs from audiocraft for 30 s models; docs/DIFFERENCES.md):
    ``MAGNeT.set_generation_params`` defaults to ``[20, 10, 10, 10]`` for every model, while audiocraft's
    MAGNeT demo notebook (and the model card) use ``[int(20 * duration // 10), 10, 10, 10]``, i.e.
    ``[60, 10, 10, 10]`` for the 30 s models. We follow the demo: the first stage gets 20 steps per 10 s
    of window (``[20, 10, 10, 10]`` at 10 s, as the reference). Pass ``decoding_steps=(20, 10, 10, 10)``
    to get ``set_generation_params``' value on a 30 s model.
    """
    return max(int(20 * segment_duration // 10), 1)


def _number(name: str, value, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"GenerationConfig.{name} must be a finite number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"GenerationConfig.{name} must be {bounds}, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Decoding parameters, audiocraft names; defaults = ``MAGNeT.set_generation_params`` (music, 10 s).

    Frozen and hashable (``decoding_steps`` is a tuple): a static argument of the jitted program.
    Every value is checked at construction (and so on ``replace``): a bad knob is a one-line ValueError.
    """
    use_sampling: bool = True                        # False: argmax (greedy)
    temp: float = 3.0                                # annealed to 0 over a stage's steps (floored at 0.01)
    top_k: int = 0                                   # used when top_p == 0
    top_p: float = 0.9                               # nucleus mass; 0 = off
    max_cfg_coef: float = 10.0                       # CFG coefficient at mask rate 1 (first step) ...
    min_cfg_coef: float = 1.0                        # ... and at mask rate 0
    decoding_steps: tuple[int, ...] = (20, 10, 10, 10)   # one count per codebook (len = the model's n_q)
    span_arrangement: str = "nonoverlap"             # "nonoverlap" chunks or "stride1" overlapping spans
    span_scoring: str = "max"                        # nonoverlap chunk score: "max" (1 - max p) or "prod"
    anneal_temp: bool = True
    # Beyond the reference (MaskGIT's "choice temperature"): Gumbel noise scaled by choice_temp, annealed to 0 over
    # a stage's steps as temp is, is subtracted from the new units' re-masking scores (-log p for tokens / spans),
    # so a step keeps some less confident tokens instead of the most confident ones only. 0 = audiocraft's ranking.
    choice_temp: float = 0.0
    # Rescoring (paper section 3.3; magnet_jax/decoding/rescoring.py): None = off. With w set, the re-masking
    # confidences are p = w * p_MAGNeT + (1 - w) * p_rescorer (Eq. 5, rescorer_weight_on="magnet"), or
    # p = w * p_rescorer + (1 - w) * p_MAGNeT (the paper's Fig. 4 pseudo-code, rescorer_weight_on="rescorer").
    rescorer_weight: float | None = None
    rescorer_weight_on: str = "magnet"
    rescorer_cfg_coef: float | None = None           # the rescorer's CFG; None = MusicGen's default cfg_coef

    def __post_init__(self):
        steps = self.decoding_steps
        if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
            raise ValueError(f"GenerationConfig.decoding_steps must be a sequence of ints, got {steps!r}")
        if not steps or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in steps):
            raise ValueError(f"GenerationConfig.decoding_steps must be integers >= 1, got {tuple(steps)}")
        object.__setattr__(self, "decoding_steps", tuple(int(s) for s in steps))
        if self.span_arrangement not in ARRANGEMENTS:
            raise ValueError(f"span_arrangement must be one of {ARRANGEMENTS}, got {self.span_arrangement!r}")
        if self.span_scoring not in SCORINGS:
            raise ValueError(f"span_scoring must be one of {SCORINGS}, got {self.span_scoring!r}")
        for name in ("use_sampling", "anneal_temp"):
            if getattr(self, name) not in (True, False):
                raise ValueError(f"GenerationConfig.{name} must be True or False, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, numbers.Integral) or self.top_k < 0:
            raise ValueError(f"GenerationConfig.top_k must be an integer >= 0, got {self.top_k!r}")
        object.__setattr__(self, "top_k", int(self.top_k))
        # normalised to Python floats: equal configs hash equally (one compiled program)
        object.__setattr__(self, "temp", _number("temp", self.temp, 0.0))
        object.__setattr__(self, "top_p", _number("top_p", self.top_p, 0.0, 1.0))
        object.__setattr__(self, "choice_temp", _number("choice_temp", self.choice_temp, 0.0))
        object.__setattr__(self, "max_cfg_coef", _number("max_cfg_coef", self.max_cfg_coef))
        object.__setattr__(self, "min_cfg_coef", _number("min_cfg_coef", self.min_cfg_coef))
        if self.rescorer_weight is not None:
            object.__setattr__(self, "rescorer_weight", _number("rescorer_weight", self.rescorer_weight, 0.0, 1.0))
        if self.rescorer_cfg_coef is not None:
            object.__setattr__(self, "rescorer_cfg_coef", _number("rescorer_cfg_coef", self.rescorer_cfg_coef))
        if self.rescorer_weight_on not in WEIGHT_SIDES:
            raise ValueError(f"rescorer_weight_on must be one of {WEIGHT_SIDES}, got {self.rescorer_weight_on!r}")

    @property
    def magnet_weight(self) -> float:
        """The weight of MAGNeT's own probabilities in the re-masking confidences (1.0 = no rescoring)."""
        if self.rescorer_weight is None:
            return 1.0
        return self.rescorer_weight if self.rescorer_weight_on == "magnet" else 1.0 - self.rescorer_weight

    @property
    def rescoring(self) -> bool:
        """Whether a step runs the rescorer: only when it changes the confidences (weight of MAGNeT < 1)."""
        return self.magnet_weight != 1.0

    # ------------------------------------------------------------------ the released settings
    @classmethod
    def music(cls, duration: float = 10.0, **kw) -> "GenerationConfig":
        """MAGNeT music models: temp 3.0, top-p 0.9, CFG 10 -> 1, steps ``[first_stage_steps(duration), 10, 10, 10]``
        (``[20, 10, 10, 10]`` for 10 s, ``[60, 10, 10, 10]`` for 30 s, as the audiocraft demo)."""
        return cls(**{"decoding_steps": (first_stage_steps(duration), 10, 10, 10), **kw})

    @classmethod
    def audio(cls, duration: float = 10.0, **kw) -> "GenerationConfig":
        """Audio-MAGNeT (sound effects): temp 3.5, top-p 0.8, CFG 20 -> 1, steps as :meth:`music`."""
        return cls(**{"temp": 3.5, "top_p": 0.8, "max_cfg_coef": 20.0, "min_cfg_coef": 1.0,
                      "decoding_steps": (first_stage_steps(duration), 10, 10, 10), **kw})

    @classmethod
    def for_model(cls, kind: str, segment_duration: float, **kw) -> "GenerationConfig":
        """The defaults of a model of ``kind`` ("music" / "audio", as ``configs.RELEASED``) and window."""
        if kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
        return (cls.music if kind == "music" else cls.audio)(segment_duration, **kw)

    # ------------------------------------------------------------------ plumbing
    def replace(self, **kw) -> "GenerationConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decoding_steps"] = list(self.decoding_steps)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GenerationConfig":
        return strict_from_dict(cls, d)


@dataclasses.dataclass(frozen=True)
class MusicGenGenerationConfig:
    use_sampling: bool = True          # False = greedy (argmax of the CFG logits)
    temp: float = 1.0                  # softmax temperature; 0 = greedy
    top_k: int = 250                   # used when top_p == 0
    top_p: float = 0.0                 # nucleus sampling when > 0 (takes precedence over top_k)
    cfg_coef: float = 3.0              # logits = uncond + (cond - uncond) * cfg_coef
    # True: conditional and null batches run as two B-row forwards with their own caches (audiocraft's
    # option; same values here, since null rows never lengthen the text keys). False: one 2B-row batch.
    two_step_cfg: bool = False
    extend_stride: float = 18.0        # seconds: long-form step when duration > the model's window

    def __post_init__(self):
        if self.top_k < 0 or not 0.0 <= self.top_p <= 1.0 or self.temp < 0:
            raise ValueError(f"bad sampling parameters top_k={self.top_k} top_p={self.top_p} temp={self.temp}: "
                             "need top_k >= 0, 0 <= top_p <= 1, temp >= 0")

    @property
    def greedy(self) -> bool:
        return not self.use_sampling or self.temp <= 0.0

    def replace(self, **kw) -> "MusicGenGenerationConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MusicGenGenerationConfig":
        return strict_from_dict(cls, d)


def with_knobs(config, knobs: Mapping[str, Any], source: str):
    """``config`` (a generation config) with the decoding ``knobs`` (field -> value) from ``source`` (a file, a flag,
    an argument: named in the error) on top. A knob the config has not, or a bad value, is a one-line ValueError
    naming ``source``; no knobs returns ``config`` itself."""
    if not knobs:
        return config
    kind = type(config).__name__
    try:
        return config.replace(**knobs)
    except TypeError as e:
        raise ValueError(f"{source}: generation {dict(knobs)}: not {kind} fields ({e})") from None
    except ValueError as e:
        raise ValueError(f"{source}: generation {dict(knobs)}: {e}") from None
