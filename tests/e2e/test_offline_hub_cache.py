"""MagnetPipeline.from_pretrained from a warm Hugging Face cache with HF_HUB_OFFLINE=1, in a fresh process that
cannot import torch. Small random models sit under the real repo ids: the LM (facebook/magnet-small-10secs, as
released: state_dict.bin + a compression_state_dict.bin redirect), the EnCodec (facebook/encodec_32khz) and T5
(t5-base, the legacy id audiocraft's T5Conditioner caches); the cache is laid out by huggingface_hub's helpers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from magnet_jax.text.presets import TINY_TOKENIZER
from tests.helpers import ROOT, tiny_50hz_codec
from tests.hf_cache import add_folder
from tests.reference import magnet_ref as R

LM_ID = "facebook/magnet-small-10secs"


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    from audiocraft.utils.export import export_pretrained_compression_model  # after the shim (magnet_ref)
    from transformers import T5Config, T5EncoderModel
    d = tmp_path_factory.mktemp("offline")
    lm = d / "lm"
    R.make_checkpoint(lm, R.magnet_xp_cfg(dim=32, num_heads=2, num_layers=2, segment_duration=1, t5_name="t5-base"),
                      seed=3, half=True)
    export_pretrained_compression_model("facebook/encodec_32khz", lm / "compression_state_dict.bin")
    (lm / "README.md").write_text("MAGNeT (random test weights)\n")
    codec = tiny_50hz_codec(d / "codec")
    t5 = d / "t5"
    torch.manual_seed(0)
    t5_cfg = T5Config(vocab_size=132, d_model=768, d_kv=8, num_heads=2, d_ff=16, num_layers=1)
    T5EncoderModel(t5_cfg).save_pretrained(t5)
    for f in TINY_TOKENIZER.iterdir():
        shutil.copy(f, t5 / f.name)
    cache = d / "hub"
    # what an online run leaves: the files, refs/main, and .no_exist for the probes the repo answered "absent"
    add_folder(cache, LM_ID, lm, missing=("config.json",))
    add_folder(cache, "someone/magnet-finetuned", lm)          # a community repo in the released layout
    add_folder(cache, "facebook/encodec_32khz", codec)
    add_folder(cache, "t5-base", t5, missing=("special_tokens_map.json",))
    return d, cache


CHILD = """
import json, sys
sys.modules["torch"] = None                      # any import of torch fails
import numpy as np
from magnet_jax.decoding import GenerationConfig
from magnet_jax.pipelines.magnet import MagnetPipeline
out = {}
for src in json.loads(sys.argv[1]):
    pipe = MagnetPipeline.from_pretrained(src)
    wav = pipe.generate(["calm piano"], duration=1.0, seed=0, decoding_steps=(2, 1, 1, 1))
    # one window (the reference stops at a multiple of the span length: 48 of 50 frames)
    assert wav.shape[:2] == (1, 1) and 7000 < wav.shape[2] <= 8000 and np.isfinite(wav).all(), wav.shape
    assert pipe.generation == GenerationConfig.for_model("music", 1.0)
    out[src] = [pipe.sample_rate, pipe.window_seconds, pipe.lm.config.text_dim, float(np.abs(wav).max())]
assert not [m for m, v in sys.modules.items() if m.split(".")[0] == "torch" and v is not None]
print("RESULT", json.dumps(out))
"""


def test_from_pretrained_offline_from_a_warm_cache(warm_cache, tmp_path):
    d, cache = warm_cache
    srcs = [LM_ID, "someone/magnet-finetuned", str(d / "lm" / "state_dict.bin")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "MAGNET_JAX_CACHE": str(tmp_path / "mj"), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(srcs)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(r.stdout.split("RESULT", 1)[1])
    for src in srcs:
        assert res[src][:3] == [8000, 1.0, 768], src
    # same checkpoint, same seed: the same audio whichever way it was named
    assert res[LM_ID][3] == res["someone/magnet-finetuned"][3] == res[srcs[2]][3]
