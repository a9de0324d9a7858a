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


def write_corpus(folder: Path, n: int = 12, sr: int = 8000, seed: int = 0) -> Path:
    """``n`` short clips (tones, chords, noise; 1.5-4 s) with sidecar descriptions + a manifest."""
    import soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = ["calm", "piano", "drums", "happy", "rock", "guitar", "ambient", "synth", "jazz", "bass"]
    lines = []
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
        path = folder / f"clip{i:02d}.wav"
        sf.write(path, x.astype(np.float32), sr)
        desc = " ".join(rng.choice(words, 3))
        (folder / f"clip{i:02d}.json").write_text(json.dumps({"description": desc}))
        lines.append(json.dumps({"path": path.name, "duration": dur, "sample_rate": sr}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "manifest.jsonl"


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
