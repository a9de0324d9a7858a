"""Tokenized dataset codes equal the transformers EncodecModel's codes of the same resampled segments."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr
import tensorflow_datasets as tfds
import torch

from magnet_jax.data import tokenize as tok
from magnet_jax.data.audio_io import LevelOptions
from tests.helpers import signal, write_corpus
from tests.tokenize_corpus import SR, tiny_codec_dir


def test_dataset_codes_equal_transformers_encode(tmp_path):
    codec_dir, model = tiny_codec_dir(tmp_path / "codec")
    manifest = write_corpus(tmp_path / "corpus", clips=[
        dict(name="chord_44k_stereo.flac", wav=signal("chord", 44100, 1.7, 2), sr=44100),
        dict(name="tone_16k.wav", wav=signal("tone", 16000, 1.3), sr=16000)])
    res = tok.tokenize_corpus(codec=codec_dir, manifest=str(manifest), data_dir=str(tmp_path / "tfds"),
                              name="ref_codes", options=tok.TokenizeOptions(
                                  segment_seconds=1.0, overlap_seconds=0.0, min_seconds=0.5, length_quantum_seconds=0.5,
                                  level=LevelOptions(silence_db=None)))
    src = tfds.builder_from_directory(res.dataset_dir).as_data_source("train")
    assert len(src) == 4  # 1 s segments, the last one ending at the end of the file
    hop = 32
    for i in range(len(src)):
        ex = src[i]
        path = ex["path"].decode() if isinstance(ex["path"], bytes) else ex["path"]
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        x = data.T.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
        if sr != SR:
            x = soxr.resample(x.T, sr, SR, quality="HQ").T.astype(np.float32)
        x = x / max(1.0, float(np.abs(x).max()))
        a = int(ex["offset_frames"]) * hop
        seg = x[:, a: a + int(ex["num_frames"]) * hop]
        with torch.no_grad():
            ref = model.encode(torch.from_numpy(seg[None]), None, 12.0).audio_codes[0, 0].numpy()
        np.testing.assert_array_equal(ex["codes"], ref, err_msg=f"{path} @ {a}")
