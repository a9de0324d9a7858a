"""The fine-tuning job's data step (``tools/finetune.py``): audio files -> a tokenized dataset with a ``train`` and a
held-out ``valid`` split, in ``WORKDIR/data/tokens`` (the LM trainer's ``data_dir`` with ``eval_split=valid``).

Descriptions: a sidecar ``.json`` (its ``description`` and other text fields, as the tokenizer reads them), else a
sidecar ``.txt`` (its text), else ``description`` (the job's ``--description``), else the file name (``calm_piano``
-> ``calm piano``). A manifest line's own ``description`` comes first. The held-out slice is fixed by the file list
(seeded shuffle): ``valid_fraction`` of the files, at least 1 (so at least 2 files are needed).
Re-running is free: each step leaves a ``done`` marker and is skipped when it is there.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from magnet_jax.data import audio_io
from magnet_jax.data.tokenize.corpus import CorpusError, item_metadata, list_audio_dir, list_manifest
from magnet_jax.util.user_input import UserError

DONE = "done"


def _txt_sidecar(path: str) -> str:
    p = Path(os.path.splitext(path)[0] + ".txt")
    if p.is_file():
        try:
            return " ".join(p.read_text(encoding="utf-8").split())
        except (OSError, UnicodeDecodeError):
            return ""
    return ""


def _name_description(path: str) -> str:
    return " ".join(re.sub(r"[_\-.]+", " ", Path(path).stem).split())


def list_clips(*, audio_dir: str | None = None, manifest: str | None = None,
               description: str | None = None) -> list[dict]:
    """``[{"path", "description", ...metadata}]`` of the usable audio files (a user error when there are none)."""
    try:
        items = list_manifest(manifest) if manifest else list_audio_dir(audio_dir)
    except CorpusError as e:
        raise UserError(str(e)) from None
    clips = []
    for it in items:
        if it.error or not it.path.lower().endswith(audio_io.AUDIO_EXTENSIONS) or not os.path.isfile(it.path):
            continue
        meta = dict(it.metadata) if manifest else item_metadata(it.path)
        if not meta.get("description"):
            meta["description"] = _txt_sidecar(it.path) or (description or "").strip() or _name_description(it.path)
        clips.append({"path": os.path.abspath(it.path), **meta})
    where = f"--manifest={manifest!r}" if manifest else f"--audio_dir={audio_dir!r}"
    if not clips:
        raise UserError(f"no audio found in {where}: give audio files ({', '.join(audio_io.AUDIO_EXTENSIONS)})")
    if len(clips) < 2:
        raise UserError(f"{where} holds 1 audio file: fine-tuning needs at least 2 (one is held out for validation)")
    return clips


def split_clips(clips: list[dict], valid_fraction: float = 0.1, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, valid): a seeded shuffle of the files, ``valid_fraction`` of them held out (at least 1)."""
    order = np.random.default_rng(seed).permutation(len(clips))
    n_valid = min(len(clips) - 1, max(1, int(round(valid_fraction * len(clips)))))
    valid = sorted((clips[i] for i in order[:n_valid]), key=lambda c: c["path"])
    train = sorted((clips[i] for i in order[n_valid:]), key=lambda c: c["path"])
    return train, valid


def _write_manifest(path: Path, clips: list[dict]) -> None:
    path.write_text("".join(json.dumps(c) + "\n" for c in clips))


def prepare_tokens(data_root: Path, *, codec_path: str, audio_dir: str | None = None, manifest: str | None = None,
                   description: str | None = None, segment_seconds: float = 30.0, log=print) -> Path:
    """Tokenizes the train / valid splits with ``codec_path`` and joins them into ``data_root/tokens``
    (skipped when done); returns that folder."""
    tokens = data_root / "tokens"
    if (tokens / DONE).is_file():
        log(f"tokens: {tokens} exists, tokenization skipped")
        return tokens
    data_root.mkdir(parents=True, exist_ok=True)
    train, valid = split_clips(list_clips(audio_dir=audio_dir, manifest=manifest, description=description))
    from magnet_jax.convert.encodec import load_encodec
    from magnet_jax.data.tokenize import TokenizeOptions, tokenize_corpus
    codec = None
    opts = TokenizeOptions(segment_seconds=segment_seconds)
    for split, clips in (("train", train), ("valid", valid)):
        out = data_root / f"tokens_{split}"
        if (out / DONE).is_file():
            continue
        man = data_root / f"{split}.jsonl"
        _write_manifest(man, clips)
        if codec is None:
            codec = load_encodec(codec_path)
        log(f"tokenizing {len(clips)} {split} file(s) with {codec_path}")
        res = tokenize_corpus(codec=codec, codec_path=codec_path, data_dir=str(out), manifest=str(man),
                              name="finetune", options=opts, overwrite=True)
        if not res.report["summary"].get("segments"):
            raise UserError(f"no usable {split} audio (see {res.report_path})")
        (out / DONE).touch()
    from magnet_jax.bundled.splits import merge_splits
    merge_splits(tokens, {"train": data_root / "tokens_train", "valid": data_root / "tokens_valid"})
    (tokens / DONE).touch()
    return tokens
