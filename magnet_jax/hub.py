"""Resolving model files from a local folder or a Hugging Face hub repo id, and the local cache.

Everything that downloads goes through :func:`resolve_file`, so the error a user sees when the hub
cannot be reached is the same everywhere and says how to work offline (pass a local folder).
"""
from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.file_download import _CACHED_NO_EXIST, repo_folder_name


class HubError(RuntimeError):
    """A model could not be located: hub unreachable, unknown repo, or a file is missing."""


def cache_dir(*parts: str) -> Path:
    """Root for converted weights: ``$MAGNET_JAX_CACHE`` or ``~/.cache/magnet_jax``."""
    root = Path(os.environ.get("MAGNET_JAX_CACHE", Path.home() / ".cache" / "magnet_jax"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_local(path_or_repo_id: str | os.PathLike) -> bool:
    return Path(path_or_repo_id).expanduser().exists()


def _hf_cache_root() -> Path:
    return Path(constants.HF_HUB_CACHE)   # read at call time: HF_HOME / HF_HUB_CACHE as huggingface_hub sees them


def is_cached(repo_id: str) -> bool:
    """True when the Hugging Face cache holds a snapshot of the model repo ``repo_id`` (any file of it)."""
    if not _REPO_ID.fullmatch(str(repo_id)):
        return False
    snaps = _hf_cache_root() / repo_folder_name(repo_id=str(repo_id), repo_type="model") / "snapshots"
    return snaps.is_dir() and any(snaps.iterdir())


_REACHABLE: dict[str, bool] = {}


def hub_reachable() -> bool:
    """Whether the hub endpoint accepts a connection: one probe per process and endpoint, at most 2 s.

    The project's one network probe: when it says no, :func:`resolve_file` reads only the local cache, and the
    generate job (:func:`magnet_jax.jobs.generate.load_pipeline`) may fall back to its offline model.
    huggingface_hub retries an unreachable hub for ~25 s per file before it falls back to its cache; a warm
    cache on a machine without network must not wait that long. ``HF_HUB_OFFLINE=1`` skips the check; behind a
    proxy (``HTTPS_PROXY`` ...) a direct connection says nothing, so the hub is assumed reachable.
    """
    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = constants.ENDPOINT
    if endpoint not in _REACHABLE:
        url, answered = urlparse(endpoint), []

        def connect():   # in a thread: the name lookup itself has no timeout
            try:
                with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                              timeout=1.5):
                    answered.append(True)
            except OSError:
                pass
        probe = threading.Thread(target=connect, daemon=True)
        probe.start()
        probe.join(2.0)
        _REACHABLE[endpoint] = bool(answered)
    return _REACHABLE[endpoint]


# "owner/name" or a legacy single-name id ("t5-base"), as the hub accepts them
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def resolve_file(path_or_repo_id: str | os.PathLike, filename: str, *, optional: bool = False) -> str | None:
    """Path of ``filename`` inside a local folder, or downloaded from the hub repo ``path_or_repo_id``.

    A local *file* path is accepted as-is when its name matches. Returns None for a missing
    optional file; raises :class:`HubError` otherwise. Offline (``HF_HUB_OFFLINE=1`` or no network), files
    in the Hugging Face cache are used; an optional file is absent when the cache holds the repo without it.
    """
    p = Path(path_or_repo_id).expanduser()
    if p.is_file():
        if p.name == filename or not optional:
            return str(p)
        return None
    if p.is_dir():
        f = p / filename
        if f.is_file():
            return str(f)
        if optional:
            return None
        have = sorted(x.name for x in p.iterdir())[:20]
        raise HubError(f"{filename!r} not found in local folder {str(p)!r} (it has: {have})")
    repo_id = str(path_or_repo_id)
    if not _REPO_ID.fullmatch(repo_id) or repo_id.endswith((".bin", ".pt", ".th", ".safetensors")):
        raise HubError(f"{repo_id!r} is neither an existing local path nor a Hugging Face repo id "
                       f"of the form 'owner/name'")
    if optional and try_to_load_from_cache(repo_id, filename, cache_dir=_hf_cache_root()) is _CACHED_NO_EXIST:
        return None   # the cache remembers that the repo has no such file
    try:
        return hf_hub_download(repo_id, filename, cache_dir=_hf_cache_root(), local_files_only=not hub_reachable())
    except LocalEntryNotFoundError:  # offline (HF_HUB_OFFLINE or no network) and not in the local cache
        if optional and is_cached(repo_id):   # the repo is cached, this optional file is not part of it
            return None
        why = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"no connection to {constants.ENDPOINT}")
        raise HubError(_unreachable(repo_id, filename, f"{why}, and the file is not in the Hugging Face cache "
                                                       f"{str(_hf_cache_root())!r}")) from None
    except EntryNotFoundError:
        if optional:
            return None
        raise HubError(f"{filename!r} is not in hub repo {repo_id!r}") from None
    except RepositoryNotFoundError:
        raise HubError(f"hub repo {repo_id!r} does not exist (or is private), and no local folder of that "
                       f"name exists") from None
    except Exception as e:  # connection refused, DNS, timeouts ...
        raise HubError(_unreachable(repo_id, filename, e)) from None


def _unreachable(repo_id: str, filename: str, e: Exception | str) -> str:
    why = e if isinstance(e, str) else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return (f"could not download {filename!r} from hub repo {repo_id!r}: the Hugging Face hub is not reachable "
            f"({why}). Download the repo elsewhere (e.g. `hf download {repo_id} "
            f"--local-dir DIR`) and pass that local folder instead of the repo id.")
