"""A per-thread time limit, checked between model calls: the web app's per-request limit.

:func:`limit` sets a deadline for the calling thread; the pipelines call :func:`check` before each LM call (one
window of long-form generation, one infill pass), so a request stops at most one LM call after its limit, with
a :class:`TimeLimitExceeded` (a user error: one line). No deadline set (the CLIs, the Python API): no effect."""
from __future__ import annotations

import contextlib
import threading
import time

from magnet_jax.util.user_input import UserError

_local = threading.local()


class TimeLimitExceeded(UserError):
    """The request ran past its time limit."""


@contextlib.contextmanager
def limit(seconds: float | None):
    """Within the block, :func:`check` raises once ``seconds`` have passed (None or 0: no limit)."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = (time.monotonic() + float(seconds), float(seconds)) if seconds else None
    try:
        yield
    finally:
        _local.deadline = previous


def check() -> None:
    """Raises :class:`TimeLimitExceeded` when this thread's deadline has passed."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() > deadline[0]:
        raise TimeLimitExceeded(f"the request ran past the {deadline[1]:g} s time limit one request has here: "
                                f"ask for a shorter duration or fewer descriptions")
