"""The one user-error type and one check per kind of user input, shared by the CLIs, the web app and the
Python API: a :class:`UserError` is one line saying what is wrong and what to do; the CLIs print it as a usage
error (exit 2, :mod:`magnet_jax.util.cli`), the app shows it to the visitor (without server paths)."""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

SEED_MAX = 2**63 - 1           # NumPy / JAX seeds are 64-bit


class UserError(ValueError):
    """A user error: one line, what is wrong and what to do."""


def finite(name: str, value, *, positive: bool = False, minimum: float | None = None):
    """``value`` (or None) as a finite float (> 0 with ``positive``, >= ``minimum``)."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"--{name}={value!r} must be a number") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise UserError(f"--{name}={value} must be a finite number{' > 0' if positive else ''}")
    if minimum is not None and v < minimum:
        raise UserError(f"--{name}={value:g} must be >= {minimum:g}")
    return v


def seed(name: str, value) -> int:
    """A PRNG seed: an integer in [0, 2**63)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise UserError(f"--{name}={value!r} must be an integer") from None
        if not f.is_integer():
            raise UserError(f"--{name}={value!r} must be an integer")
        value = int(f)
    if not 0 <= value <= SEED_MAX:
        raise UserError(f"--{name}={value} must be in [0, 2**63)")
    return value


def writable_dir(name: str, path: str | os.PathLike, *, create: bool = True) -> Path:
    """A folder that exists (created when ``create``) and can be written to, proven now."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"--{name}={str(path)!r} is a file, not a folder")
    try:
        if create:
            p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write_test_"):
            pass
    except OSError as e:
        raise UserError(f"--{name}={str(path)!r} is not writable ({e.strerror or e}); pick another folder") from None
    return p


def output_dir(name: str, path: str | os.PathLike, *, overwrite: bool, why: str = "") -> Path:
    """:func:`writable_dir` for an export: a folder that already holds files is refused unless ``overwrite``
    (``why``: what replacing them would do, said in the error)."""
    p = Path(path).expanduser()
    held = sorted(f.name for f in p.iterdir()) if p.is_dir() else []
    if held and not overwrite:
        raise UserError(f"--{name}={str(path)!r} holds files already ({', '.join(held[:3])}): pass --overwrite to "
                        f"replace them{f' ({why})' if why else ''}, or another --{name}")
    return writable_dir(name, p)


def text_file(name: str, path: str | os.PathLike) -> str:
    """The UTF-8 text of a file the user named."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"--{name}={str(path)!r} " + ("is a folder" if p.is_dir() else "does not exist"))
    try:
        body = p.read_bytes()
    except OSError as e:
        raise UserError(f"--{name}={str(path)!r} cannot be read ({e.strerror or e})") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--{name}={str(path)!r} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None


def json_file(name: str, path: str | os.PathLike) -> dict:
    """The JSON object in a file (named in the error, with its format)."""
    text = text_file(name, path)
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise UserError(f"{str(path)!r} is not valid JSON ({e}): restore or delete it") from None
    if not isinstance(obj, dict):
        raise UserError(f"{str(path)!r} holds JSON {type(obj).__name__}, not an object: restore or delete it")
    return obj


def snake_name(name: str, value: str) -> str:
    """A dataset-style name: ``[a-z][a-z0-9_]*`` (never a path)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", value or ""):
        raise UserError(f"--{name}={value!r} must be snake_case ([a-z][a-z0-9_]*), not a path")
    return value


def one_line(e: BaseException) -> str:
    """An exception as one line (its type when it has no message)."""
    text = " ".join(str(e).split())
    return text or type(e).__name__


def texts(value) -> list | None:
    """Generation texts: None (unconditional), one ``str`` (one clip), or a sequence of ``str`` / None."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, bytearray)):
        raise UserError("texts must be str, not bytes: decode them first (e.g. b.decode('utf-8'))")
    try:
        items = list(value)
    except TypeError:
        raise UserError(f"texts must be a str, a list of str or None, not {type(value).__name__}") from None
    bad = [t for t in items if t is not None and not isinstance(t, str)]
    if bad:
        raise UserError(f"texts must be strings (None for an unconditional item), got {type(bad[0]).__name__} "
                        f"{bad[0]!r}")
    return items


def count(name: str, value, *, maximum: int | None = None, hint: str = "") -> int:
    """A positive integer (at most ``maximum``; ``hint``: how to lift that cap)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"--{name}={value!r} must be an integer >= 1")
    if value < 1:
        raise UserError(f"--{name}={value}: must be >= 1")
    if maximum is not None and value > maximum:
        raise UserError(f"--{name}={value} is more than {maximum}{hint}")
    return value
