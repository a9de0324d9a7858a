"""The training config recorded in the workdir (``WORKDIR/config.json``), and a config change told apart from
checkpoint damage: when the checkpoints' arrays do not match the model the config builds, the error names the
config fields that differ from the recorded ones (the checkpoints are intact and stay where they are)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from magnet_jax.training.checkpoint import ConfigMismatchError
from magnet_jax.util.user_input import json_file

CONFIG_NAME = "config.json"
__all__ = ["CONFIG_NAME", "ConfigMismatchError", "config_dict", "diff_configs", "explain_mismatch",
           "read_recorded", "record_config"]


def config_dict(cfg) -> dict:
    """A ConfigDict / mapping as plain JSON data."""
    if hasattr(cfg, "to_json"):
        return json.loads(cfg.to_json())
    return json.loads(json.dumps(dict(cfg), default=str))


def read_recorded(workdir: str | os.PathLike) -> dict | None:
    """The config recorded in ``workdir`` (None if none; a file that is not JSON is a one-line UserError)."""
    p = Path(workdir) / CONFIG_NAME
    return json_file("workdir", p) if p.is_file() else None


def record_config(workdir: str | os.PathLike, cfg) -> None:
    """Writes ``workdir/config.json`` atomically."""
    p = Path(workdir) / CONFIG_NAME
    tmp = p.with_name(f".{CONFIG_NAME}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(config_dict(cfg), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, p)


def _flat(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def diff_configs(recorded, current) -> list[str]:
    """``field: recorded -> current`` for every field that differs."""
    a, b = _flat(config_dict(recorded) if recorded is not None else {}), _flat(config_dict(current))
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, "(unset)") != b.get(k, "(unset)")]


def explain_mismatch(err: ConfigMismatchError, recorded, current, what: str) -> str:
    """One line: the checkpoints are intact but were written with another config; which fields differ."""
    diffs = diff_configs(recorded, current) if recorded is not None else []
    model = [d for d in diffs if d.startswith("model.")] or diffs
    fields = (f"fields that differ from {CONFIG_NAME}: " + "; ".join(model[:6])
              + (f" (+{len(model) - 6} more)" if len(model) > 6 else "")) if model else (
        "no config.json records the config they were written with")
    return (f"the checkpoints in {err.directory} are intact but were written with another config ({fields}; "
            f"e.g. {err.arrays[0]}): pass {what}, or another --workdir to start a new run")
