"""One tokenize run per dataset at a time: ``DATA_DIR/NAME/.VERSION.lock`` names its holder (pid, host).

A second run on the same dataset stops with an error naming the holder instead of deleting the holder's
in-progress build. A lock left by a killed run on this host (its pid is gone) is taken over; the holder
of a lock from another host cannot be checked, so the error says which file to remove once it is gone.
Only the lock holder removes incomplete builds (``NAME/incomplete.*``), so a live run's build is never removed.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time

from magnet_jax.util.user_input import UserError

log = logging.getLogger(__name__)


class BuildLockedError(UserError, RuntimeError):
    """Another live tokenize run holds the dataset's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_path(data_dir: str, name: str, version: str) -> str:
    return os.path.join(data_dir, name, f".{version}.lock")


class BuildLock:
    """Context manager holding the dataset's lock (a no-op for remote ``data_dir``: use Beam's own job control)."""

    def __init__(self, data_dir: str, name: str, version: str):
        self.path = None if "://" in data_dir else lock_path(data_dir, name, version)

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, fh)
        return True

    def __enter__(self):
        if self.path is None:
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(5):
            if self._try_create():
                return self
            try:
                with open(self.path, encoding="utf-8") as fh:
                    holder = json.load(fh)
            except FileNotFoundError:
                continue  # released meanwhile
            except (OSError, ValueError):  # being written right now, or left half-written by a crash
                if time.time() - os.path.getmtime(self.path) < 5:
                    time.sleep(1.0)
                    continue
                holder = {"host": socket.gethostname()}
                os.remove(self.path)
                continue
            pid, host = int(holder.get("pid", -1)), holder.get("host", "?")
            if host == socket.gethostname() and pid > 0 and pid != os.getpid() and _alive(pid):
                raise BuildLockedError(
                    f"another tokenize run (pid {pid} on {host}, started "
                    f"{time.strftime('%H:%M:%S', time.localtime(holder.get('started', 0)))}) is building "
                    f"{os.path.dirname(self.path)}; wait for it to finish, or use another --data_dir / --name")
            if host != socket.gethostname():
                raise BuildLockedError(
                    f"{self.path} says a tokenize run (pid {pid}) on host {host} is building this dataset; "
                    f"if that run is gone, delete {self.path} and run again")
            log.warning("taking over the lock of an earlier, interrupted run (pid %s): %s", pid, self.path)
            try:
                with open(self.path, encoding="utf-8") as fh:
                    if fh.read() == json.dumps(holder):  # still the stale one, not a fresh lock of a racing run
                        os.remove(self.path)
            except (OSError, ValueError):
                pass
        raise BuildLockedError(f"could not take {self.path}: another run keeps taking it; try again")

    def __exit__(self, *exc):
        if self.path is not None:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        return False
