"""tools/evaluate.py end to end on a tiny bundled-layout model: the model row decodes with the folder's recorded
defaults or with --generation knobs over them, and eval.json says which; a bad knob is one line."""
import json

import numpy as np
import pytest
from flax import nnx

from magnet_jax.bundled import build
from magnet_jax.bundled.text import build_text_encoder
from magnet_jax.codec.random_init import random_encodec
from magnet_jax.convert import save_lm_safetensors
from magnet_jax.convert.encodec_export import export_codec
from magnet_jax.model import MagnetConfig, MagnetLM
from tests.helpers import run_tool, write_corpus

SR = 16000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    export_codec(random_encodec(sample_rate=SR, frame_rate=50, num_codebooks=4, bins=64, seed=1), root / "codec",
                 "transformers")
    lm = MagnetConfig(n_q=4, card=64, dim=32, num_heads=2, num_layers=1, text_dim=128, frame_rate=50,
                      segment_duration=1.0)
    save_lm_safetensors(MagnetLM(lm, rngs=nnx.Rngs(0)), root / "lm", extra={"step": 3})
    build_text_encoder(["a slow chorale on piano in C major, 60 bpm", "a fast reel on synth pad in A minor"],
                       root / "t5")
    model = build.assemble(root / "model", lm=root / "lm", codec=root / "codec", t5=root / "t5")
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    manifests = {}
    for split, n in (("train", 6), ("valid", 3)):
        clips = []
        for i in range(n):
            tone = i % 2 == 0
            wav = 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t) if tone else 0.1 * rng.standard_normal(t.size)
            meta = dict(description="a slow chorale on piano in C major, 60 bpm" if tone else
                        "a fast reel on synth pad in A minor, 140 bpm", instrument_family="keyboard" if tone else
                        "synth", key="C" if tone else "A", mode="major" if tone else "minor", bpm=60 if tone else 140)
            name = f"{split}{i}.wav"
            clips.append(dict(name=name, wav=wav[:, None], sr=SR, sidecar=meta,
                              line={"path": str(root / "corpus" / name), "sample_rate": SR}))
        manifests[split] = write_corpus(root / "corpus", clips=clips, manifest=f"{split}.jsonl")
    return root, model, manifests


def _evaluate(setup, out, *extra, check=True):
    root, model, manifests = setup
    return run_tool(["tools/evaluate.py", f"--model={model}", f"--manifest={manifests['valid']}",
                     f"--train_manifest={manifests['train']}", f"--out={out}", "--num_clips=3", "--num_train=6",
                     "--seconds=1", "--random_baseline=false", "--plots=false", *extra], check=check, timeout=600)


def test_model_row_uses_the_folders_decoding_defaults_or_the_given_knobs(setup, tmp_path):
    _evaluate(setup, tmp_path / "own")
    own = json.loads((tmp_path / "own" / "eval.json").read_text())
    assert own["generation"]["max_cfg_coef"] == 3.0 and own["generation"]["top_p"] == 0.9     # bundled.json's
    assert set(own["rows"]) == {"real", "model"} and own["rows"]["model"]["n"] == 3
    _evaluate(setup, tmp_path / "knobs", "--generation=max_cfg_coef=10", "--generation=decoding_steps=[2,1,1,1]",
              "--generation=span_arrangement=stride1")
    knobs = json.loads((tmp_path / "knobs" / "eval.json").read_text())["generation"]
    assert (knobs["max_cfg_coef"], knobs["decoding_steps"], knobs["span_arrangement"]) == (10.0, [2, 1, 1, 1],
                                                                                          "stride1")
    assert knobs["top_p"] == 0.9                                                       # the rest: the defaults


@pytest.mark.parametrize("spec,needle", [("cfg_coef=3", "not GenerationConfig fields"),
                                         ("top_p=2", "top_p must be"),
                                         ("max_cfg_coef", "expected KNOB=VALUE")])
def test_a_bad_knob_is_one_line(setup, tmp_path, spec, needle):
    p = _evaluate(setup, tmp_path / "bad", f"--generation={spec}", check=False)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr[-2000:]
    assert not (tmp_path / "bad").exists()                      # refused before any clip is read or written
