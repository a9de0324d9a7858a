"""Held-out LM loss per stage next to a unigram baseline: the cross-entropy (nats) of the held-out codes of
codebook k under the training split's code frequencies (add-one smoothed). MAGNeT's stage k predicts codebook k,
so a trained LM's ``eval_loss_stage{k}`` (``tools/train.py`` metrics) should sit below ``unigram_stage{k}``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _counts(source, card: int) -> np.ndarray:
    counts = None
    for i in range(len(source)):
        codes = np.asarray(source[i]["codes"], np.int64)
        if counts is None:
            counts = np.zeros((codes.shape[0], card), np.int64)
        for k in range(codes.shape[0]):
            counts[k] += np.bincount(codes[k], minlength=card)[:card]
    if counts is None:
        raise ValueError("empty split: no codes to count")
    return counts


def unigram_baseline(data_dir: str | Path, card: int, train_split: str = "train",
                     eval_split: str = "valid") -> dict:
    """``{"unigram_stage{k}": nats}`` of ``eval_split`` under ``train_split``'s per-codebook code frequencies."""
    from magnet_jax.data.input_pipeline import data_source, find_builder_dir
    b = find_builder_dir(str(data_dir))
    train, held = _counts(data_source(b, train_split), card), _counts(data_source(b, eval_split), card)
    p = (train + 1) / (train + 1).sum(1, keepdims=True)
    ce = -(held * np.log(p)).sum(1) / held.sum(1)
    return {f"unigram_stage{k}": float(v) for k, v in enumerate(ce)} | {"uniform": float(np.log(card))}


def last_eval_losses(metrics_jsonl: str | Path) -> dict:
    """The last logged ``eval_loss*`` values of a ``tools/train.py`` workdir's ``metrics.jsonl`` (+ its step)."""
    out = {}
    for line in Path(metrics_jsonl).read_text().splitlines():
        row = json.loads(line)
        ev = {k: v for k, v in row.items() if k.startswith("eval_loss")}
        if ev:
            out = {"step": row.get("step"), **ev}
    return out
