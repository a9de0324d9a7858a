"""TrainConfig: the typed training config, built once from the ml_collections ConfigDict at the CLI edge.

The ConfigDict keeps a flat surface (``--config.learning_rate=1e-4 --config.total_steps=N``); ``from_config``
routes each top-level field to the group that owns it (optimizer, step, data, loop) and each section
(``model``, ``text``, ``codec``, ``mesh``, ``distributed``) to its dataclass. An unknown field, a
non-finite number or an impossible value is a :class:`ConfigError` naming the field. The dataclass
defaults are the music recipe (``magnet_32khz.yaml``); :data:`AUDIO_RECIPE` holds what audio changes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from magnet_jax.model import families, lora
from magnet_jax.model.config import LMConfig
from magnet_jax.util import strict_from_dict


def model_config_class(objective: str) -> type[LMConfig]:
    """The model config a training objective trains (:func:`magnet_jax.model.families.family_for_objective`):
    MagnetConfig for ``magnet``, HybridMagnetConfig for ``hybrid``, MusicGenConfig for ``musicgen``."""
    return families.family_for_objective(objective).config_class


class ConfigError(ValueError):
    """A user error in a config (the train CLI reports it in one line, exit 2)."""


def _check_objective(objective: str) -> None:
    if objective not in families.OBJECTIVES:
        raise ConfigError(f"config.objective={objective!r}: use {', '.join(families.OBJECTIVES)}")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW + global-norm clipping + the learning-rate schedule (see training/optim.py)."""
    learning_rate: float = 1e-4
    schedule: str = "cosine"            # cosine | inverse_sqrt | constant
    warmup_steps: int = 4000
    total_steps: int = 1_000_000
    lr_min_ratio: float = 0.0
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0          # 0 = no clipping


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What one train step does besides the optimizer update (see training/step.py)."""
    grad_accum_steps: int = 1
    ema_decay: float = 0.99             # bias-corrected EMA (audiocraft ModuleDictEMA(unbias=True))
    ema_every: int = 10
    cfg_dropout: float = 0.3
    per_sample_stage: bool = False
    per_sample_cfg: bool = False
    # MAGNeT objective: relative draw weight of each codebook stage, e.g. (0.7, 0.1, 0.1, 0.1) to spend most steps
    # on the first codebook; () = uniform (audiocraft's).
    stage_weights: tuple = ()
    # objectives/table.OBJECTIVES; config.model is the family's config (model/families.py). magnet: MAGNeT's span
    # masking. hybrid: Hybrid-MAGNeT (objectives/hybrid.py: AR prefix + span-masked suffix, a per-sample stage and
    # prompt step; a HybridMagnetConfig, model.delays). musicgen: MusicGen's delay-pattern CE on every codebook
    # (objectives/musicgen.py; a MusicGenConfig).
    objective: str = "magnet"

    def __post_init__(self):              # a JSON / ConfigDict list -> a hashable tuple of floats
        object.__setattr__(self, "stage_weights", tuple(float(w) for w in self.stage_weights))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data_dir: str = ""                  # folder written by tools/tokenize_dataset.py
    dataset_name: str = ""              # TFDS name inside data_dir ("" = the only one there)
    train_split: str = "train"
    eval_split: str = ""                # "" = no eval; e.g. "train[:5%]" or a held-out split name
    min_segment_ratio: float = 0.8      # crop seek <= duration - ratio x segment (audiocraft; audio: 1.0)
    sample_on_duration: bool = False    # files drawn uniformly (audiocraft); True: proportional to duration
    merge_text_p: float = 0.25          # description augmentation from metadata (text2music.yaml; audio: 0)
    drop_desc_p: float = 0.5
    drop_other_p: float = 0.5
    worker_count: int = 0               # grain worker processes per host
    batch_size: int = 192               # global batch


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    seed: int = 0
    log_every: int = 100
    eval_every: int = 2000
    eval_batches: int = 8
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3
    max_consecutive_skips: int = 20     # stop after this many non-finite steps in a row (0 = never)
    init_from: str = ""                 # fine-tune: released checkpoint (hub id / folder); "" = from scratch
    peak_tflops_per_device: float = 0.0  # for MFU; 0 = known TPU table, or a measured matmul on CPU


@dataclasses.dataclass(frozen=True)
class LoRATrainConfig:
    """LoRA fine-tuning (model/lora.py, training/lora.py): only the adapters (and their optimizer state and EMA) are
    trained and checkpointed; the export holds the merged weights and the adapter alone. 0 = full fine-tuning."""
    lora_rank: int = 0
    lora_alpha: float = lora.DEFAULT_ALPHA          # the update is scaled by alpha / rank
    lora_targets: tuple[str, ...] = lora.DEFAULT_TARGETS   # of lora.TARGETS (a tuple, or one comma-separated string)

    def __post_init__(self):
        object.__setattr__(self, "lora_targets", lora.parse_targets(self.lora_targets))

    def adapter(self) -> lora.LoRAConfig | None:
        """The adapters' config; None for full fine-tuning."""
        if not self.lora_rank:
            return None
        return lora.LoRAConfig(rank=self.lora_rank, alpha=self.lora_alpha, targets=self.lora_targets)


@dataclasses.dataclass(frozen=True)
class TextConfig:
    name: str = "t5-base"               # text/presets: hub name, folder, or "tiny"
    max_length: int = 64                # T5 tokens; longer descriptions are truncated with a warning
    word_dropout: float = 0.3


@dataclasses.dataclass(frozen=True)
class CodecSpec:
    """The codec the dataset must have been tokenized with (checked against its codec record)."""
    name: str = ""
    sample_rate: int = 32000
    channels: int = 1


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int = -1                      # -1 = the remaining devices
    fsdp: int = 1
    tensor: int = 1


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """``jax.distributed.initialize`` arguments (multi-host); empty address = single process."""
    coordinator_address: str = ""
    num_processes: int = 1
    process_id: int = 0
    local_device_count: int = 0         # >0: that many CPU devices per process (tests)


# Audio-MAGNeT (audio_magnet_16khz.yaml) where it differs from the music recipe.
AUDIO_RECIPE = dict(batch_size=128, total_steps=200_000, learning_rate=5e-4, schedule="inverse_sqrt",
                    warmup_steps=3000, cfg_dropout=0.1, min_segment_ratio=1.0, merge_text_p=0.0)
AUDIO_TEXT = dict(name="t5-large", word_dropout=0.0)

_FLAT = (OptimConfig, StepConfig, DataConfig, LoopConfig, LoRATrainConfig)
_FLAT_NAMES = ("optim", "step", "data", "loop", "lora")
_SECTIONS = {"text": TextConfig, "codec": CodecSpec, "mesh": MeshConfig, "distributed": DistributedConfig}
_NOT_TRAINING = ("name", "checkpoint", "generation")     # read by generation / the pipeline, not by training


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: LMConfig                     # the objective's family config (model_config_class)
    optim: OptimConfig = OptimConfig()
    step: StepConfig = StepConfig()
    data: DataConfig = DataConfig()
    loop: LoopConfig = LoopConfig()
    lora: LoRATrainConfig = LoRATrainConfig()
    text: TextConfig = TextConfig()
    codec: CodecSpec = CodecSpec()
    mesh: MeshConfig = MeshConfig()
    distributed: DistributedConfig = DistributedConfig()

    @staticmethod
    def field_names() -> dict[str, list[str]]:
        """Every config field training reads, by ConfigDict path (for ``--help``)."""
        out = {"": [f.name for g in _FLAT for f in dataclasses.fields(g)]}
        out.update({s: [f.name for f in dataclasses.fields(c)] for s, c in _SECTIONS.items()})
        trained = [model_config_class(o) for o in families.OBJECTIVES]       # each objective's model fields
        out["model"] = list(dict.fromkeys(f.name for c in trained for f in dataclasses.fields(c)))
        return out

    @staticmethod
    def defaults(kind: str = "music") -> dict[str, Any]:
        """The training part of a ConfigDict for ``kind`` (flat fields + text / mesh / distributed)."""
        flat = {k: v for g in _FLAT for k, v in dataclasses.asdict(g()).items()}
        text = dataclasses.asdict(TextConfig())
        if kind == "audio":
            flat.update(AUDIO_RECIPE)
            text.update(AUDIO_TEXT)
        return dict(flat, text=text, mesh=dataclasses.asdict(MeshConfig()),
                    distributed=dataclasses.asdict(DistributedConfig()))

    @classmethod
    def from_config(cls, c: Mapping[str, Any]) -> "TrainConfig":
        """From a ConfigDict (or its ``to_dict()``); unknown fields and bad values raise :class:`ConfigError`."""
        d = dict(c.to_dict() if hasattr(c, "to_dict") else c)
        for k in _NOT_TRAINING:
            d.pop(k, None)
        _check_objective(d.get("objective", StepConfig.objective))
        try:
            model = model_config_class(d.get("objective", StepConfig.objective)).from_dict(d.pop("model"))
            sections = {s: strict_from_dict(k, d.pop(s, {})) for s, k in _SECTIONS.items()}
            groups = {}
            for g, gname in zip(_FLAT, _FLAT_NAMES):
                names = {f.name for f in dataclasses.fields(g)}
                groups[gname] = g(**{k: d.pop(k) for k in list(d) if k in names})
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
        if d:
            raise ConfigError(f"unknown config fields {sorted(d)}; known: {sorted(cls.field_names()[''])}")
        out = cls(model=model, **groups, **sections)
        out.validate()
        return out

    def validate(self) -> None:
        """Refuses what cannot train: non-finite or out-of-range hyper-parameters, fp16, zero intervals."""
        for group in (self.optim, self.step, self.data, self.loop, self.lora, self.text):
            for f in dataclasses.fields(group):
                v = getattr(group, f.name)
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"config.{f.name}={v} is not a finite number")
        o, s, dc, lp = self.optim, self.step, self.data, self.loop
        positive = dict(total_steps=o.total_steps, batch_size=dc.batch_size, grad_accum_steps=s.grad_accum_steps,
                        ema_every=s.ema_every, log_every=lp.log_every, eval_every=lp.eval_every,
                        checkpoint_every=lp.checkpoint_every, keep_checkpoints=lp.keep_checkpoints)
        for k, v in positive.items():
            if v <= 0:
                raise ConfigError(f"config.{k}={v} must be at least 1")
        nonneg = dict(learning_rate=o.learning_rate, warmup_steps=o.warmup_steps, max_grad_norm=o.max_grad_norm,
                      eps=o.eps, weight_decay=o.weight_decay, max_consecutive_skips=lp.max_consecutive_skips,
                      eval_batches=lp.eval_batches, worker_count=dc.worker_count)
        for k, v in nonneg.items():
            if v < 0:
                raise ConfigError(f"config.{k}={v} must not be negative")
        if not 0 <= lp.seed < 2**32:     # the data pipeline's (grain) seed range
            raise ConfigError(f"config.seed={lp.seed} must be in [0, 2**32)")
        if self.text.max_length < 1:
            raise ConfigError(f"config.text.max_length={self.text.max_length} must be at least 1 (T5 tokens per "
                              f"description)")
        for k, v in dict(b1=o.b1, b2=o.b2, ema_decay=s.ema_decay).items():
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"config.{k}={v} must be in [0, 1)")
        for k, v in dict(cfg_dropout=s.cfg_dropout, word_dropout=self.text.word_dropout,
                         lr_min_ratio=o.lr_min_ratio).items():
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"config.{k}={v} must be in [0, 1]")
        _check_objective(s.objective)
        sw = s.stage_weights
        if sw and (len(sw) != self.model.n_q or min(sw) < 0 or sum(sw) <= 0
                   or not all(math.isfinite(float(w)) for w in sw)):
            raise ConfigError(f"config.stage_weights={sw}: give {self.model.n_q} non-negative weights (one per "
                              f"codebook, not all 0), or () for uniform")
        if sw and s.objective != "magnet":
            raise ConfigError(f"config.stage_weights applies to the magnet objective, not {s.objective!r}: use ()")
        if o.schedule not in ("cosine", "inverse_sqrt", "constant"):
            raise ConfigError(f"config.schedule={o.schedule!r}: use cosine, inverse_sqrt or constant")
        if dc.batch_size % s.grad_accum_steps:
            raise ConfigError(f"config.batch_size={dc.batch_size} is not divisible by "
                              f"config.grad_accum_steps={s.grad_accum_steps}")
        if self.lora.lora_rank < 0:
            raise ConfigError(f"config.lora_rank={self.lora.lora_rank} must not be negative (0 = full fine-tuning)")
        try:
            self.lora.adapter()
        except ValueError as e:
            raise ConfigError(f"config.lora_*: {e}") from None
        if self.model.dtype == "float16":
            # No loss scaling in the train step: fp16 activation gradients underflow. bf16 has fp32's range.
            raise ConfigError("config.model.dtype=float16 is not supported for training (no loss scaling): "
                              "use bfloat16 or float32")
