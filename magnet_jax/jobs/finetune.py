"""Fine-tune a model on a folder of audio in one call (``tools/finetune.py``): tokenize with the model's own codec
(a held-out ``valid`` slice: :mod:`.finetune_data`), train from the model's weights with the LM trainer (full or
LoRA), measure the held-out loss per stage before and after (:mod:`.finetune_eval`), and write
``WORKDIR/export``: the fine-tuned LM with its codec and the name of its T5, loadable by
``tools/generate.py --model=WORKDIR/export``. Re-running the same call resumes: every step is skipped when done,
training continues from its checkpoints.

WORKDIR: ``data/`` (manifests, tokens), ``base/`` (the model re-saved with another window, only for a
``duration`` other than the model's), ``lm/`` (the trainer's workdir), ``export/``, ``finetune.json`` (summary).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from magnet_jax.util.user_input import UserError, one_line

SUMMARY = "finetune.json"
CODEC_FILES = ("config.json", "model.safetensors", "compression_state_dict.bin", "preprocessor_config.json")
LM_FILES = ("magnet_jax_lm.safetensors", "magnet_jax_config.json")


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    steps: int = 500
    lora_rank: int = 0
    duration: float | None = None        # training window (s); None = the model's
    description: str | None = None       # for files without a sidecar
    batch_size: int = 4
    learning_rate: float | None = None   # None: 1e-4 (full) / 1e-3 (LoRA)
    warmup_steps: int | None = None      # None: min(50, steps // 10)
    seed: int = 0

    def check(self) -> None:
        if self.steps <= 0:
            raise UserError(f"--steps={self.steps} must be at least 1")
        if self.lora_rank < 0:
            raise UserError(f"--lora_rank={self.lora_rank} must not be negative (0 = full fine-tuning)")
        if self.duration is not None and not (self.duration > 0 and self.duration < 3600):
            raise UserError(f"--duration={self.duration} must be a number of seconds in (0, 3600)")
        if self.batch_size < 1:
            raise UserError(f"--batch_size={self.batch_size} must be at least 1")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise UserError(f"--learning_rate={self.learning_rate} must be > 0")


@dataclasses.dataclass(frozen=True)
class Source:
    lm_dir: str        # what init_from loads (hub id or folder)
    codec: str         # hub id or folder of its codec
    t5: str
    kind: str
    config: object     # its LMConfig


def resolve_model(model: str) -> Source:
    """The LM, codec and T5 of ``model`` (hub id, folder, or the bundled layout); a one-line error if unreadable."""
    from magnet_jax.bundled.package import resolve as resolve_bundled
    from magnet_jax.convert import load_audiocraft_checkpoint
    try:
        bundled = resolve_bundled(model)
        lm_dir = str(bundled / "lm") if bundled is not None else model
        ck = load_audiocraft_checkpoint(lm_dir, cache=False)
    except Exception as e:  # noqa: BLE001  (hub / format / damaged-file errors: all are "cannot be loaded")
        raise UserError(f"--model={model!r} cannot be loaded: {one_line(e)}") from None
    if ck.channels != 1:
        raise UserError(f"--model={model!r} is a stereo model: fine-tuning supports mono models")
    t5 = str(bundled / "t5") if bundled is not None else ck.t5_name
    if not t5:
        raise UserError(f"--model={model!r} does not record its T5 text encoder")
    codec = str(bundled / "codec") if bundled is not None else ck.codec_source
    return Source(lm_dir, codec, t5, ck.kind, ck.lm.config)


def _base_with_window(src: Source, duration: float, folder: Path) -> str:
    """The model re-saved with another window (``segment_duration`` is part of the architecture config)."""
    if not (folder / LM_FILES[0]).is_file():
        from magnet_jax.convert import load_audiocraft_lm
        from magnet_jax.convert.checkpoint import flat_params, write_safetensors
        from magnet_jax.model.families import family_of
        lm = load_audiocraft_lm(src.lm_dir, cache=False)
        cfg = dataclasses.replace(lm.config, segment_duration=float(duration))
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_safetensors(tmp, flat_params(lm), cfg, {"lm_model": family_of(cfg).lm_model, "t5": src.t5,
                                                      "kind": src.kind})
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return str(folder)


def train_config(src: Source, base: str, tokens: Path, o: FinetuneOptions, eval_in_loop: bool) -> dict:
    """The trainer's config (a plain dict for ``TrainConfig.from_config``)."""
    from magnet_jax.data.tokenize.codec_record import read_codec_info
    from magnet_jax.model.families import family_of
    from magnet_jax.training.config import TrainConfig
    mcfg = src.config if o.duration is None else dataclasses.replace(src.config, segment_duration=float(o.duration))
    info = read_codec_info(str(tokens))
    d = TrainConfig.defaults(src.kind)
    lr = o.learning_rate or (1e-3 if o.lora_rank else 1e-4)
    d.update(model=mcfg.to_dict(), objective=family_of(mcfg).objective, data_dir=str(tokens),
             eval_split="valid" if eval_in_loop else "", total_steps=o.steps, learning_rate=lr,
             warmup_steps=o.warmup_steps if o.warmup_steps is not None else min(50, o.steps // 10),
             batch_size=o.batch_size, log_every=max(1, min(50, o.steps // 10)), eval_every=max(1, min(500, o.steps)),
             eval_batches=4, checkpoint_every=max(1, min(200, o.steps)), ema_every=1, init_from=base, seed=o.seed,
             codec=dict(name=info.get("path") or info["name"], sample_rate=int(info["sample_rate"]),
                        channels=int(info.get("channels", 1))))
    d["text"] = dict(d["text"], name=src.t5)
    if o.lora_rank:
        if "lora_rank" not in TrainConfig.field_names()[""]:
            raise UserError("--lora_rank: this version of the trainer has no LoRA (config.lora_rank)")
        d["lora_rank"] = o.lora_rank
    return d


def write_export(lm_export: Path, src: Source, out: Path) -> Path:
    """``out``: the trainer's export + the codec files + the T5 / kind facts (a folder generate.py loads alone)."""
    from magnet_jax import hub
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(lm_export, tmp)
    for name in CODEC_FILES:
        f = hub.resolve_file(src.codec, name, optional=True)
        if f is not None and not (tmp / name).exists():
            shutil.copy2(f, tmp / name)
    meta = json.loads((tmp / LM_FILES[1]).read_text())
    meta.update(t5=src.t5, kind=src.kind, channels=1)
    (tmp / LM_FILES[1]).write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _eval(cfg, model: str, batch: int) -> dict:
    from magnet_jax.jobs.finetune_eval import heldout_loss
    out = heldout_loss(cfg, model, batch)
    return out or heldout_loss(cfg, model, 1)


def run_finetune(model: str, workdir: str | Path, *, audio_dir: str | None = None, manifest: str | None = None,
                 options: FinetuneOptions = FinetuneOptions(), log=print) -> dict:
    """The whole job (resumable); returns the summary also written to ``WORKDIR/finetune.json``."""
    o = options
    o.check()
    if (audio_dir is None) == (manifest is None):
        raise UserError("pass one of --audio_dir (a folder of audio) or --manifest (a JSONL file)")
    import jax
    if o.batch_size % jax.device_count():
        raise UserError(f"--batch_size={o.batch_size} is not a multiple of the {jax.device_count()} devices")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    summary_path = work / SUMMARY
    done = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    src = resolve_model(model)
    window = o.duration if o.duration is not None else src.config.segment_duration
    from magnet_jax.jobs.finetune_data import prepare_tokens
    tokens = prepare_tokens(work / "data", codec_path=src.codec, audio_dir=audio_dir, manifest=manifest,
                            description=o.description, segment_seconds=max(60.0, 2 * float(window)), log=log)
    n_valid = sum(1 for line in (work / "data" / "valid.jsonl").read_text().splitlines() if line.strip())
    base = src.lm_dir if o.duration in (None, src.config.segment_duration) else _base_with_window(
        src, o.duration, work / "base")
    from magnet_jax.training import TrainConfig, train
    from magnet_jax.training.run_config import record_config
    raw = train_config(src, base, tokens, o, eval_in_loop=n_valid >= o.batch_size)
    cfg = TrainConfig.from_config(raw)
    eval_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, eval_split="valid"))
    batch = max(1, min(o.batch_size, n_valid))
    key = {"model": model, "window": float(window), "valid_files": n_valid}
    if done.get("before_key") == key:
        before = done["before"]
    else:
        log("held-out loss of the model before fine-tuning ...")
        before = _eval(eval_cfg, base, batch)
        done = {"before_key": key, "before": before}
        summary_path.write_text(json.dumps(done, indent=1))
    lm_work = work / "lm"
    lm_work.mkdir(exist_ok=True)
    record_config(lm_work, raw)
    log(f"fine-tuning {'LoRA rank %d' % o.lora_rank if o.lora_rank else 'all weights'} for {o.steps} steps "
        f"(lr {cfg.optim.learning_rate:g}, batch {o.batch_size}, window {window:g} s) in {lm_work}")
    last = train(cfg, str(lm_work))
    step = json.loads((lm_work / "export" / LM_FILES[1]).read_text()).get("step")
    export = write_export(lm_work / "export", src, work / "export")
    if done.get("after_step") == step and "after" in done:
        after = done["after"]
    else:
        log("held-out loss after fine-tuning ...")
        after = _eval(eval_cfg, str(export), batch)
    done.update(after=after, after_step=step, export=str(export), steps=step, lora_rank=o.lora_rank,
                train_loss=last.get("loss"), tokens=str(tokens), model=model)
    summary_path.write_text(json.dumps(done, indent=1))
    return done


def format_summary(s: dict) -> str:
    before, after = s.get("before", {}), s.get("after", {})
    stages = sorted(k for k in after if k.startswith("eval_loss_stage"))
    rows = [f"  {k[len('eval_loss_'):]}: {before.get(k, float('nan')):.4f} -> {after[k]:.4f}" for k in stages]
    if "eval_loss" in after:
        rows.append(f"  mean:   {before.get('eval_loss', float('nan')):.4f} -> {after['eval_loss']:.4f}")
    return "\n".join([f"fine-tuned {s['model']} for {s['steps']} steps"
                      + (f" (LoRA rank {s['lora_rank']})" if s.get("lora_rank") else ""),
                      "held-out loss per stage (before -> after):", *(rows or ["  (no held-out batch)"]),
                      f"model: {s['export']}",
                      f"generate: python tools/generate.py --model={s['export']} --text=\"...\""])
