"""Small shared test utilities (synthetic corpora, a tiny 50 Hz codec in the transformers layout)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def tiny_50hz_codec(folder: Path, seed: int = 0) -> Path:
    """A random-weight transformers EncodecModel (8 kHz, hop 160 = 50 Hz, 4 codebooks x 2048, like
    the released tokenizer's token layout), saved with ``save_pretrained``."""
    from tests.reference.encodec_ref import hf_model
    model = hf_model(seed=seed, sampling_rate=8000, audio_channels=1, upsampling_ratios=[8, 5, 4], num_filters=4,
                     hidden_size=16, num_lstm_layers=1, codebook_size=2048, target_bandwidths=[2.2],
                     use_causal_conv=False, pad_mode="reflect", num_residual_layers=1, normalize=False)
    model.save_pretrained(str(folder))
    return folder


def signal(kind: str, sr: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """float32 ``[N, C]`` (soundfile layout): ``tone`` (220 Hz + 70 Hz per channel), ``chord`` (C major) or
    ``noise``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    out = []
    for c in range(channels):
        if kind == "tone":
            x = 0.4 * np.sin(2 * np.pi * (220 + 70 * c) * t)
        elif kind == "chord":
            x = sum(0.2 * np.sin(2 * np.pi * f * (1 + 0.01 * c) * t) for f in (261.6, 329.6, 392.0))
        else:
            x = 0.2 * rng.standard_normal(t.shape)
        out.append(x)
    return np.stack(out, 1).astype(np.float32)


def write_corpus(folder: Path, n: int = 12, sr: int = 8000, seed: int = 0, *, clips: list[dict] | None = None,
                 manifest: str | None = "manifest.jsonl") -> Path | None:
    """Write audio clips, their sidecars and (unless ``manifest=None``) a manifest; returns the manifest.

    ``clips``: dicts ``name`` (relative path), ``wav`` ([N, C] float), ``sr``, optional ``subtype``,
    ``sidecar`` (a dict, or a string written as is) and ``line`` (extra manifest fields). Default: ``n``
    short clips (tones, chords, noise; 1.5-4 s at ``sr``) with sidecar descriptions."""
    import soundfile as sf
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = _default_clips(n, sr, seed) if clips is None else clips
    lines = []
    for c in clips:
        path = folder / c["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.asarray(c["wav"], np.float32), c["sr"], **({"subtype": c["subtype"]} if c.get("subtype")
                                                                    else {}))
        side = c.get("sidecar")
        if side is not None:
            path.with_suffix(".json").write_text(side if isinstance(side, str) else json.dumps(side))
        lines.append(json.dumps({"path": c["name"], **c.get("line", {})}))
    if manifest is None:
        return None
    (folder / manifest).write_text("\n".join(lines) + "\n")
    return folder / manifest


def _default_clips(n: int, sr: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    words = ["calm", "piano", "drums", "happy", "rock", "guitar", "ambient", "synth", "jazz", "bass"]
    clips = []
    for i in range(n):
        dur = float(rng.uniform(1.5, 4.0))
        t = np.arange(int(dur * sr)) / sr
        kind = i % 3
        if kind == 0:
            x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * t)
        elif kind == 1:
            x = sum(0.15 * np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 900, 3))
        else:
            x = 0.1 * rng.standard_normal(t.size)
        desc = " ".join(rng.choice(words, 3))
        clips.append(dict(name=f"clip{i:02d}.wav", wav=x[:, None], sr=sr, sidecar={"description": desc},
                          line={"duration": dur, "sample_rate": sr}))
    return clips


def run_tool(args: list[str], env_extra: dict | None = None, timeout: int = 600, check: bool = True):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p


def read_metrics(workdir: Path) -> dict[int, dict]:
    """Last logged row per step (a resumed run re-logs the steps after its checkpoint)."""
    rows = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "loss" in r:
            rows[r["step"]] = r
    return rows
