"""Orbax checkpoints of the train state plus the Grain iterator state, and preemption handling.

Layout: ``WORKDIR/checkpoints/<step>/{state, data}`` (orbax ``CheckpointManager``, async saves,
``keep`` newest kept). ``state`` holds params, optimizer state, EMA params, step and the skip
counter; ``data`` one JSON per process with that process's iterator position. Restoring takes
abstract targets carrying the *current* mesh's shardings, so a run can resume on another mesh.
A half-written checkpoint (process killed mid-save) is ignored by orbax; the previous one is used.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import grain
import orbax.checkpoint as ocp

from magnet_jax.training.state import TrainState


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=opts)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_iterator=None, *, force: bool = False) -> bool:
        items = {"state": ocp.args.StandardSave(state.to_dict())}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, abstract: TrainState, data_iterator=None, step: int | None = None) -> TrainState | None:
        """The newest (or ``step``) checkpoint onto ``abstract``'s shardings; rewinds ``data_iterator``
        in place. None when there is no checkpoint."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        items = {"state": ocp.args.StandardRestore(abstract.to_dict())}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        return TrainState.from_dict(dict(out["state"]))

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()


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
