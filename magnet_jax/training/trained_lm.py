"""The trained LM of a ``tools/train.py`` workdir, for export (``tools/export_lm.py``).

The weights are the EMA, as the trainer's own export at the end of training (``WORKDIR/export``: written by
:func:`magnet_jax.training.loop.export_ema`) and audiocraft's ``best_state``. When that export is at least as new
as the newest checkpoint it is read as is (the same files ``convert.load_lm_safetensors`` reads); otherwise (a run
stopped or preempted before its last step, or resumed with more steps) the newest intact orbax checkpoint is
restored onto the model the recorded config (``WORKDIR/config.json``) builds, with the trainer's own
:class:`~magnet_jax.training.checkpoint.Checkpointer`. ``ema=False`` takes the raw parameters of that checkpoint.

A LoRA workdir (``config.lora_rank > 0``) checkpoints the adapters alone (their AdamW moments, their EMA, the
counters): its checkpoint is restored onto the adapters' shapes, the base is rebuilt as the trainer built it
(``config.init_from``, or the seeded random init; :func:`magnet_jax.training.loop.initial_model`) and the EMA (or raw)
adapters are merged into it with the trainer's own merge (:func:`magnet_jax.training.lora.make_merge`), so the LM is
the one the trainer would export at that step.

:func:`workdir_facts` is what the recorded config says besides the weights: the T5, music or audio, the codec.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from magnet_jax import sharding
from magnet_jax.convert.checkpoint import from_export
from magnet_jax.convert.lm_files import CONFIG_NAME as LM_CONFIG_NAME
from magnet_jax.convert.lm_files import SAFETENSORS_NAME
from magnet_jax.model.families import lm_class
from magnet_jax.model.lora import init_adapters
from magnet_jax.model.transformer import TransformerLM
from magnet_jax.training import lora as LT
from magnet_jax.training import state as S
from magnet_jax.training.checkpoint import restore_latest
from magnet_jax.training.config import ConfigError, TrainConfig
from magnet_jax.training.optim import make_optimizer
from magnet_jax.training.run_config import read_recorded
from magnet_jax.util.user_input import UserError

EXPORT_DIR = "export"


@dataclasses.dataclass(frozen=True)
class TrainedLM:
    lm: TransformerLM
    step: int
    weights: str            # "ema" | "params"
    origin: str             # the folder read: WORKDIR/export or WORKDIR/checkpoints/<step>
    config: TrainConfig
    recorded: dict          # WORKDIR/config.json as written by tools/train.py


def train_config(workdir: str | Path) -> tuple[TrainConfig, dict]:
    """The typed config recorded in ``workdir`` and its JSON (one-line :class:`UserError` if none / not usable)."""
    recorded = read_recorded(workdir)
    if recorded is None:
        raise UserError(f"{workdir} has no config.json: pass the --workdir of tools/train.py (it records the "
                        f"config there), or --model=an exported LM folder")
    try:
        return TrainConfig.from_config(recorded), recorded
    except ConfigError as e:
        raise UserError(f"{workdir}/config.json is not a training config this version reads ({e})") from None


def _latest_step(ckpt_dir: Path) -> int | None:
    steps = [int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()] if ckpt_dir.is_dir() else []
    return max(steps) if steps else None


def _export_step(export: Path) -> int | None:
    try:
        meta = json.loads((export / LM_CONFIG_NAME).read_text())
        return int(meta["step"]) if (export / SAFETENSORS_NAME).is_file() and meta.get("weights") == "ema" else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _restore(cfg: TrainConfig, ckpt_dir: Path, ema: bool) -> tuple[TransformerLM, int] | None:
    """The newest intact checkpoint's EMA (or params) as the config's LM, on one replicated mesh; a LoRA run's
    adapters merged into its base (as the trainer's export)."""
    mcfg = cfg.model
    mesh = sharding.make_mesh()                     # every local device, parameters replicated: any training mesh
    adapter = cfg.lora.adapter()
    if adapter is None:
        cls = lm_class(mcfg)
        graphdef, trained, specs = S.split_model(nnx.eval_shape(lambda: cls(mcfg, rngs=nnx.Rngs(0))))
        trained_specs, base = specs, None
    else:                           # the state holds adapters; the base is what the trainer started from
        from magnet_jax.training.loop import initial_model
        graphdef, base, specs = initial_model(cfg.loop.init_from, cfg.loop.seed, mcfg, mesh)
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), base)
        trained = jax.eval_shape(lambda: init_adapters(shapes, adapter, jax.random.PRNGKey(0)))
        trained_specs = LT.adapter_specs(base, specs, adapter)
    tx = make_optimizer(cfg.optim)
    abstract = S.abstract_state(tx, trained, S.state_specs(tx, trained, trained_specs), mesh)
    restored = restore_latest(ckpt_dir, abstract, keep=cfg.loop.keep_checkpoints)
    if restored is None:
        return None
    weights = restored.ema if ema else restored.params
    if adapter is not None:
        weights = LT.make_merge(specs, trained_specs, adapter, mesh)(base, weights)
    return nnx.merge(graphdef, jax.device_get(weights)), int(restored.step)


def load_trained_lm(workdir: str | Path, *, ema: bool = True) -> TrainedLM | None:
    """The trained LM of ``workdir`` (None when it has neither an export nor a checkpoint yet). Damaged checkpoint
    steps are set aside as when training resumes (:meth:`Checkpointer.restore`)."""
    workdir = Path(workdir)
    cfg, recorded = train_config(workdir)
    export, ckpt_dir = workdir / EXPORT_DIR, workdir / "checkpoints"
    exported, latest = _export_step(export), _latest_step(ckpt_dir)
    if ema and exported is not None and (latest is None or exported >= latest):
        got = from_export(export, {}, str(export), str(export))
        if got.lm.config.architecture() != cfg.model.architecture():
            raise UserError(f"{export} holds another model than {workdir}/config.json describes: pass --model="
                            f"{export} to export it as it is")
        return TrainedLM(got.lm, exported, "ema", str(export), cfg, recorded)
    if latest is None:
        return None
    got = _restore(cfg, ckpt_dir, ema)
    if got is None:
        return None
    lm, step = got
    return TrainedLM(lm, step, "ema" if ema else "params", str(ckpt_dir / str(step)), cfg, recorded)


def workdir_facts(trained: TrainedLM) -> dict[str, Any]:
    """What the recorded config says besides the weights: ``t5`` (config.text.name), ``kind`` (the preset's, else
    16 kHz = audio), ``codec`` (config.codec.name), ``sample_rate``, ``channels``, and the training recipe (the
    ``training`` facts of :class:`magnet_jax.convert.audiocraft_xp.ExportFacts`)."""
    from magnet_jax import presets
    cfg = trained.config
    try:
        kind = presets.get(str(trained.recorded.get("name", ""))).kind
    except ValueError:
        kind = "audio" if int(cfg.codec.sample_rate) == 16000 else "music"
    training = {"word_dropout": cfg.text.word_dropout, "cfg_dropout": cfg.step.cfg_dropout,
                "merge_text_p": cfg.data.merge_text_p, "drop_desc_p": cfg.data.drop_desc_p,
                "batch_size": cfg.data.batch_size, "min_segment_ratio": cfg.data.min_segment_ratio}
    return {"t5": cfg.text.name, "kind": kind, "codec": cfg.codec.name, "sample_rate": int(cfg.codec.sample_rate),
            "channels": int(cfg.codec.channels), "training": training}
