"""A Hugging Face hub cache written with huggingface_hub's own layout helpers (what ``hf_hub_download`` leaves).

``models--OWNER--NAME/blobs/<sha256>``, ``snapshots/<commit>/<file> -> ../../blobs/<sha256>``, ``refs/main`` =
the commit, and ``.no_exist/<commit>/<file>`` markers for files the hub said the repo lacks. The result is
checked with ``huggingface_hub.scan_cache_dir`` (the library's own reader of the cache).
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from huggingface_hub import scan_cache_dir
from huggingface_hub.file_download import _cache_commit_hash_for_specific_revision, _create_symlink, repo_folder_name


def add_repo(cache: Path, repo_id: str, files: dict[str, Path | bytes], *, missing: tuple[str, ...] = (),
             commit: str | None = None) -> Path:
    """Puts ``files`` (name -> source file or bytes) of ``repo_id`` into the cache; returns the snapshot folder."""
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    storage = Path(cache) / repo_folder_name(repo_id=repo_id, repo_type="model")
    for name, src in files.items():
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            tmp = blob.with_suffix(".incomplete")
            tmp.write_bytes(data)
            shutil.move(tmp, blob)
        pointer = storage / "snapshots" / commit / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(pointer), new_blob=False)
    _cache_commit_hash_for_specific_revision(str(storage), "main", commit)
    for name in missing:   # as hf_hub_download records an EntryNotFound answer
        marker = storage / ".no_exist" / commit / name
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    repos = {r.repo_id: r for r in scan_cache_dir(cache).repos}
    seen = {f.file_name for rev in repos[repo_id].revisions for f in rev.files} if repo_id in repos else set()
    assert seen >= {Path(n).name for n in files}, f"huggingface_hub does not see {repo_id}'s files in {cache}"
    return storage / "snapshots" / commit


def add_folder(cache: Path, repo_id: str, folder: Path, **kw) -> Path:
    """Every file of a local folder (e.g. a ``save_pretrained`` output) as the repo's files."""
    files = {str(p.relative_to(folder)): p for p in sorted(Path(folder).rglob("*")) if p.is_file()}
    return add_repo(cache, repo_id, files, **kw)
