"""Orbax checkpoints of the train state plus the Grain iterator state, integrity checks, preemption.

Layout: ``WORKDIR/checkpoints/<step>/{state, data}`` (orbax ``CheckpointManager``, async saves,
``keep`` newest kept). ``state`` holds params, optimizer state, EMA, step and the skip counters;
``data`` one JSON per process with that process's iterator position. Restoring takes abstract
targets carrying the *current* mesh's shardings, so a run can resume on another mesh.

Integrity: once a save is complete, process 0 writes ``checkpoints/integrity/<step>.json`` (size and
sha256 of every file of the step). Restore walks the steps newest first and skips any step whose
files do not match its manifest, that orbax cannot read (truncated, zero-byte, half-written) or whose
restored numbers are not finite; the skipped steps are moved to ``WORKDIR/checkpoints_damaged/`` and
named in a warning. A step without a manifest (killed between orbax's commit and the manifest write)
is trusted to orbax's own checks. Arrays of other shapes or names than the configured model are not damage
but a config change: :class:`ConfigMismatchError`, nothing moved.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp

from magnet_jax.training.state import TrainState, all_finite

log = logging.getLogger("magnet_jax.train")
MANIFESTS = "integrity"


class CheckpointError(RuntimeError):
    """No intact checkpoint to resume from (the message names the damaged steps and what to do)."""


class ConfigMismatchError(CheckpointError):
    """The checkpoints are intact but hold arrays of other shapes or names than the configured model: they were
    written with another config (nothing is moved; ``arrays``: the differences, ``directory``: where)."""

    def __init__(self, directory: Path, arrays: list[str]):
        super().__init__(f"the checkpoints in {directory} were written with another config ({'; '.join(arrays[:3])})")
        self.directory, self.arrays = directory, arrays


def _shapes(tree) -> dict[str, tuple]:
    """``{a/b/0: shape}`` of a pytree's shaped leaves (list indices and dict keys alike, as orbax stores both)."""
    def name(k):
        return str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {"/".join(name(k) for k in path): tuple(v.shape) for path, v in leaves if hasattr(v, "shape")}


def shape_mismatch(state_dir: Path, abstract: dict) -> list[str]:
    """How the arrays saved in ``state_dir`` differ from ``abstract`` (a pytree of shaped leaves), read from
    orbax's metadata only; [] when they match or the metadata cannot be read (damage is judged elsewhere)."""
    try:
        md = ocp.StandardCheckpointer().metadata(state_dir)
        tree = getattr(md, "item_metadata", md)
        have = _shapes(dict(tree))
    except Exception:   # noqa: BLE001 - unreadable metadata is damage, not a config change
        return []
    want = _shapes(abstract)
    if not have:
        return []
    out = [f"{k} is {have[k]} in the checkpoint, {want[k]} in this config" for k in sorted(set(have) & set(want))
           if have[k] != want[k]]
    out += [f"{k} is not in the checkpoint" for k in sorted(set(want) - set(have))]
    out += [f"the checkpoint has {k}, this config has not" for k in sorted(set(have) - set(want))]
    return out


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def step_manifest(step_dir: Path) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of every file under ``step_dir``."""
    return {str(p.relative_to(step_dir)): [p.stat().st_size, _digest(p)]
            for p in sorted(step_dir.rglob("*")) if p.is_file()}


def verify_step(step_dir: Path, manifest_path: Path) -> str | None:
    """None if ``step_dir`` matches its manifest (or has none), else what is wrong."""
    if not manifest_path.exists():
        return None
    try:
        want = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as e:
        return f"unreadable manifest {manifest_path.name} ({e})"
    have = step_manifest(step_dir) if step_dir.is_dir() else {}
    missing = sorted(set(want) - set(have))
    if missing:
        return f"{len(missing)} file(s) missing, e.g. {missing[0]}"
    for rel, (size, digest) in want.items():
        if have[rel][0] != size:
            return f"{rel} has {have[rel][0]} bytes, {size} were written"
        if have[rel][1] != digest:
            return f"{rel} does not match its checksum (bytes changed after the save)"
    return None


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.manifests = self.directory / MANIFESTS
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=opts)
        self._pending: int | None = None          # saved step whose manifest is not written yet

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_iterator=None, *, force: bool = False) -> bool:
        """Saves ``state`` (refusing a non-finite one: it would be resumed and poison the run)."""
        if not all_finite(state.params) or not all_finite(state.ema):
            raise FloatingPointError(f"step {step}: the parameters are not finite; not saving them (the last "
                                     f"checkpoint is kept)")
        self._finish_pending()
        items = {"state": ocp.args.StandardSave(state.to_dict())}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        if saved:
            self._pending = step
        return saved

    def _finish_pending(self) -> None:
        """Waits for the async save in flight, then writes its manifest (process 0) and prunes old ones."""
        self.manager.wait_until_finished()
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        if jax.process_index() != 0:
            return
        step_dir = self.directory / str(step)
        if step_dir.is_dir():
            self.manifests.mkdir(exist_ok=True)
            tmp = self.manifests / f"{step}.json.tmp"
            tmp.write_text(json.dumps(step_manifest(step_dir)))
            os.replace(tmp, self.manifests / f"{step}.json")
        live = {str(s) for s in self.manager.all_steps()}
        for m in self.manifests.glob("*.json"):
            if m.stem not in live:
                m.unlink(missing_ok=True)

    def restore(self, abstract: TrainState, data_iterator=None) -> TrainState | None:
        """The newest intact checkpoint onto ``abstract``'s shardings; rewinds ``data_iterator`` in place.
        None when there is no checkpoint; :class:`CheckpointError` when every one is damaged."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        damaged: list[tuple[int, str]] = []
        for step in steps:
            problem = verify_step(self.directory / str(step), self.manifests / f"{step}.json")
            state = None
            if problem is None:
                mismatch = shape_mismatch(self.directory / str(step) / "state", abstract.to_dict())
                if mismatch:      # intact files of another model: a config change, never damage
                    raise ConfigMismatchError(self.directory, mismatch)
                items = {"state": ocp.args.StandardRestore(abstract.to_dict())}
                if data_iterator is not None:
                    items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
                try:
                    out = self.manager.restore(step, args=ocp.args.Composite(**items))
                    state = type(abstract).from_dict(dict(out["state"]))   # TrainState or another state class
                except Exception as e:     # orbax / tensorstore raise many types for unreadable files
                    problem = f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            if state is not None and not (all_finite(state.params) and all_finite(state.ema)):
                problem, state = "holds non-finite parameters", None
            if state is not None:
                if damaged:
                    self._set_aside([s for s, _ in damaged])
                    log.warning("resumed from step %d, the newest intact checkpoint; damaged and moved to %s: %s",
                                step, self.directory.parent / "checkpoints_damaged",
                                "; ".join(f"step {s}: {p}" for s, p in damaged))
                return state
            log.warning("checkpoint step %d is damaged: %s", step, problem)
            damaged.append((step, problem))
        raise CheckpointError(f"no intact checkpoint in {self.directory} (" +
                              "; ".join(f"step {s}: {p}" for s, p in damaged) +
                              "): move the folder away to start over, or restore it from a backup")

    def _set_aside(self, steps: list[int]) -> None:
        """Moves damaged steps out of orbax's folder (so later saves of those steps do not collide)."""
        if jax.process_index() == 0:
            dest = self.directory.parent / "checkpoints_damaged"
            dest.mkdir(exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for s in steps:
                if (self.directory / str(s)).exists():
                    shutil.move(str(self.directory / str(s)), str(dest / f"{s}-{stamp}"))
                (self.manifests / f"{s}.json").unlink(missing_ok=True)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("magnet_jax_checkpoint_set_aside")
        self.manager.reload()

    def wait(self):
        self._finish_pending()

    def close(self):
        self._finish_pending()
        self.manager.close()


def restore_latest(directory: str | Path, abstract, **kw):
    """The newest checkpoint under ``directory`` restored into ``abstract`` (None when there is none); for
    exporters, which read a workdir once (damaged steps are set aside as when training resumes)."""
    ckpt = Checkpointer(directory, async_save=False, **kw)
    try:
        return ckpt.restore(abstract)
    finally:
        ckpt.close()


class PreemptionFlag:
    """Set by SIGTERM (cloud preemption notice); the train loop saves and exits at the next step."""

    def __init__(self):
        self.event = threading.Event()
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def __bool__(self):
        return self.event.is_set()
