"""Training descriptions from clip metadata: audiocraft's ``augment_music_info_description``.

With probability ``merge_text_p`` the metadata fields ``key, bpm, genre, moods, instrument, keywords``
(each kept with probability ``drop_other_p``: audiocraft's naming, ``keep = U(0,1) < drop_other_p``) are
shuffled into ``"key: c major. bpm: 120.0. genre: rock"``, and the original description is then dropped with
probability ``drop_desc_p``; the result is ``". ".join([description.rstrip("."), metadata]).strip()``, so a
description always ends with "." once augmentation is on. Field values are normalised as audiocraft's
``MusicInfo`` getters do (key / genre / instrument lower-cased, a key listing several keys dropped, moods and
keywords split on commas / spaces and lower-cased). audiocraft applies this to the training split only, and
only to clips that have metadata (a sidecar); clips without any metadata keep their description.
"""
from __future__ import annotations

import math
import random
import re
from typing import Any, Mapping

AUGMENT_FIELDS = ("key", "bpm", "genre", "moods", "keywords", "instrument")  # MusicInfo field order


def _text(v: Any) -> str:
    v = v.decode() if isinstance(v, bytes) else v
    return "" if v is None else str(v).strip()


def _field_text(name: str, raw: Any) -> str | None:
    """audiocraft's getter for ``name`` applied to a stored value; None if the field is absent / invalid."""
    if name == "bpm":
        try:
            b = float(raw)
        except (TypeError, ValueError):
            return None
        return str(b) if math.isfinite(b) and b > 0 else None
    v = _text(raw)
    if not v or v == "None":
        return None
    if name == "key":
        return None if "," in v else v.lower()
    if name in ("moods", "keywords"):
        words = [w.strip().lower() for w in re.split(r"[,\s]", v) if w.strip()]
        return ", ".join(words) if words else None
    return v.lower()


def has_metadata(ex: Mapping[str, Any]) -> bool:
    return any(_field_text(k, ex.get(k)) is not None for k in AUGMENT_FIELDS) or bool(_text(ex.get("description")))


def augment_description(ex: Mapping[str, Any], rng: random.Random, merge_text_p: float = 0.0,
                        drop_desc_p: float = 0.0, drop_other_p: float = 0.0) -> str:
    """The description audiocraft's ``MusicDataset`` trains on for the metadata of one example ("" = none)."""
    description = _text(ex.get("description")) or None
    if not merge_text_p or not has_metadata(ex):
        return description or ""
    metadata_text = ""
    if rng.random() < merge_text_p:
        pairs = []
        for k in AUGMENT_FIELDS:
            v = _field_text(k, ex.get(k))
            if rng.random() < drop_other_p and v is not None:
                pairs.append(f"{k}: {v}")
        rng.shuffle(pairs)
        metadata_text = ". ".join(pairs)
        description = description if not rng.random() < drop_desc_p else None
    if description is None:
        description = metadata_text if len(metadata_text) > 1 else None
    else:
        description = ". ".join([description.rstrip("."), metadata_text])
    return description.strip() if description else ""
