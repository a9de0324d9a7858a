"""One tokenize run per dataset (magnet_jax.data.tokenize.lock)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from magnet_jax.data.tokenize.lock import BuildLock, BuildLockedError, lock_path


def _write_lock(tmp_path, pid, host=None):
    p = lock_path(str(tmp_path), "codes", "1.1.0")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as fh:
        json.dump({"pid": pid, "host": host or socket.gethostname(), "started": 0.0}, fh)
    return p


def test_live_holder_is_named_and_its_lock_kept(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        p = _write_lock(tmp_path, holder.pid)
        with pytest.raises(BuildLockedError, match=f"pid {holder.pid} on {socket.gethostname()}"):
            with BuildLock(str(tmp_path), "codes", "1.1.0"):
                pass
        assert json.load(open(p))["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    with BuildLock(str(tmp_path), "codes", "1.1.0"):   # the holder is gone: its lock is taken over
        assert json.load(open(p))["pid"] == os.getpid()
    assert not os.path.exists(p)                        # released


def test_other_host_and_half_written_locks(tmp_path):
    p = _write_lock(tmp_path, 1, host="elsewhere")
    with pytest.raises(BuildLockedError, match="delete"):
        with BuildLock(str(tmp_path), "codes", "1.1.0"):
            pass
    with open(p, "w") as fh:
        fh.write("{")                                  # a crash while writing, long ago
    os.utime(p, (0, 0))
    with BuildLock(str(tmp_path), "codes", "1.1.0"):
        assert json.load(open(p))["pid"] == os.getpid()
