"""The tokenizer's test corpus (good files in many formats, deliberately broken ones) and tiny codec."""
from __future__ import annotations

import json
import os

import numpy as np

from tests.helpers import signal, write_corpus

SR = 16000  # codec rate
# name -> (expected segments of 1 s, no overlap, tails kept as a last end-aligned segment) for the good
# files; name -> reason tag for the broken ones
GOOD = {"tone_16k_mono.wav": 3, "chord_44k_stereo.flac": 2, "noise_22k_6ch.wav": 1, "tone_8k.flac": 1,
        "chord_48k_stereo.ogg": 2, "half_silent.wav": 1, "hot_float.wav": 1, "tone_32k.mp3": 2}
BROKEN = {"missing.wav": "missing", "empty.wav": "empty", "not_audio.wav": "unreadable",
          "truncated.wav": "truncated", "truncated.flac": "truncated", "silence.wav": "silent",
          "short.wav": "too_short", "nan.wav": "non_finite", "header_only.wav": "empty"}


def tiny_codec_dir(folder) -> tuple[str, object]:
    """A random-weight, non-causal (reflect-padded) transformers EncodecModel at 16 kHz (hop 32,
    4 codebooks x 64) saved with ``save_pretrained``: (folder, torch model)."""
    from tests.reference.encodec_ref import hf_model
    model = hf_model(seed=3, sampling_rate=SR, audio_channels=1, upsampling_ratios=[8, 4], num_filters=8,
                     hidden_size=16, num_lstm_layers=1, codebook_size=64, target_bandwidths=[12.0],
                     use_causal_conv=False, pad_mode="reflect", num_residual_layers=1, normalize=False)
    model.save_pretrained(str(folder))
    return str(folder), model


def write_tokenize_corpus(d) -> None:
    """The good files (with sidecars, one malformed) and the broken ones into folder ``d``."""
    import soundfile as sf
    half = signal("chord", 16000, 2.0)
    half[16000:] = 0.0
    write_corpus(d, manifest=None, clips=[
        dict(name="tone_16k_mono.wav", wav=signal("tone", 16000, 2.3), sr=16000, sidecar={
            "description": "a sine at 220 Hz", "title": "Tone", "genre": "test", "moods": ["calm", "pure"],
            "keywords": "sine, test", "bpm": "120", "key": "A minor"}),
        dict(name="sub/chord_44k_stereo.flac", wav=signal("chord", 44100, 1.7, 2), sr=44100,
             sidecar={"description": "sidecar text", "title": "Chord", "bpm": None}),
        dict(name="noise_22k_6ch.wav", wav=signal("noise", 22050, 1.0, 6, seed=1), sr=22050, subtype="FLOAT"),
        dict(name="tone_8k.flac", wav=signal("tone", 8000, 0.6), sr=8000, sidecar="{not json"),  # kept, no metadata
        dict(name="chord_48k_stereo.ogg", wav=signal("chord", 48000, 1.2, 2), sr=48000),
        dict(name="half_silent.wav", wav=half, sr=16000),
        dict(name="hot_float.wav", wav=3.0 * signal("noise", 24000, 1.0, seed=2), sr=24000, subtype="FLOAT"),
        dict(name="tone_32k.mp3", wav=signal("tone", 32000, 1.1), sr=32000),
        dict(name="silence.wav", wav=np.zeros((24000, 1), np.float32), sr=16000),
        dict(name="short.wav", wav=signal("tone", 16000, 0.3), sr=16000),
        dict(name="header_only.wav", wav=np.zeros((0, 1), np.float32), sr=16000),
    ])
    open(d / "empty.wav", "wb").close()
    with open(d / "not_audio.wav", "w") as fh:
        fh.write("this is not a RIFF file\n")
    for ext in ("wav", "flac"):
        sf.write(d / f"full.{ext}", signal("noise", 16000, 2.0, seed=4), 16000)
        b = (d / f"full.{ext}").read_bytes()
        (d / f"truncated.{ext}").write_bytes(b[: len(b) // 2])
        os.remove(d / f"full.{ext}")
    bad = signal("tone", 16000, 1.0)
    bad[100] = np.nan
    bad[200] = np.inf
    sf.write(d / "nan.wav", bad, 16000, subtype="FLOAT")


def write_tokenize_manifest(d) -> str:
    """``d/train.jsonl``: every file above, a duplicate (absolute form), two malformed lines, a blank one."""
    names = {"tone_16k_mono.wav": "tone_16k_mono.wav", "chord_44k_stereo.flac": "sub/chord_44k_stereo.flac"}
    lines = []
    for n in list(GOOD) + list(BROKEN):
        line = {"path": names.get(n, n), "duration": 1.0, "sample_rate": 16000}
        if n == "chord_44k_stereo.flac":
            line["description"] = "manifest text"  # manifest wins over the sidecar
        lines.append(json.dumps(line))
    lines.insert(3, json.dumps({"path": str(d / "tone_16k_mono.wav")}))  # duplicate (absolute form)
    lines.insert(5, "{broken json")
    lines.insert(6, json.dumps({"no_path": 1}))
    lines.insert(7, "")
    (d / "train.jsonl").write_text("\n".join(lines) + "\n")
    return str(d / "train.jsonl")
