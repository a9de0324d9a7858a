"""MusicGenGenerationConfig: sampling and long-form parameters with audiocraft's names and defaults
(``MusicGen.set_generation_params``)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from magnet_jax.util import strict_from_dict


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
