"""Bundled folder: assembled from a codec export, an LM export and the text folder; loads as from_pretrained."""
import json

import numpy as np
import pytest
from flax import nnx

from magnet_jax import presets
from magnet_jax.bundled import build, package
from magnet_jax.bundled import config as bconfig
from magnet_jax.bundled.descriptions import describe
from magnet_jax.bundled.text import build_text_encoder
from magnet_jax.codec.random_init import random_encodec
from magnet_jax.configs import get_config
from magnet_jax.convert import save_lm_safetensors
from magnet_jax.convert.encodec_export import export_codec
from magnet_jax.decoding.config import GenerationConfig
from magnet_jax.model import MagnetConfig, MagnetLM
from magnet_jax.pipelines.magnet import MagnetPipeline

LM = MagnetConfig(n_q=4, card=64, dim=32, num_heads=2, num_layers=1, text_dim=128, frame_rate=50,
                  segment_duration=1.0)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    codec = random_encodec(sample_rate=16000, frame_rate=50, num_codebooks=4, bins=64, seed=1)
    export_codec(codec, root / "codec", "transformers")
    save_lm_safetensors(MagnetLM(LM, rngs=nnx.Rngs(0)), root / "train" / "export", extra={"step": 7})
    build_text_encoder(["a slow chorale on cello in C minor, 60 bpm", "fast folk tune on flute"], root / "t5")
    return root, codec


def test_assemble_then_from_pretrained_generates_offline(parts, tmp_path):
    root, codec = parts
    out = build.assemble(tmp_path / "weights", lm=root / "train", codec=root / "codec", t5=root / "t5",
                         info={"corpus": "test"})
    assert package.is_bundled_layout(out) and not (tmp_path / "weights.tmp").exists()
    info = json.loads((out / package.INFO).read_text())
    assert info["lm_step"] == 7 and info["corpus"] == "test" and info["sample_rate"] == 16000
    assert json.loads((out / "lm" / "magnet_jax_config.json").read_text())["t5"] == "t5"
    pipe = MagnetPipeline.from_pretrained(str(out))
    assert pipe.sample_rate == 16000 and pipe.lm.config.card == 64 and pipe.t5.dim == 128
    wav = np.asarray(pipe.codec.decode(pipe.codec.encode(np.zeros((1, 1, 16000), np.float32))))
    ref = np.asarray(codec.decode(codec.encode(np.zeros((1, 1, 16000), np.float32))))
    np.testing.assert_allclose(wav, ref, atol=1e-5)                        # the codec's own weights
    codes = np.asarray(pipe.generate_codes(["slow cello chorale"], duration=0.5, seed=0,
                                           decoding_steps=(2, 1, 1, 1)))
    assert codes.shape == (1, 4, 25) and codes.min() >= 0 and codes.max() < 64


def test_assemble_records_the_training_clips_example_description(parts, tmp_path):
    """bundled.json's example_description: a typical training description (here, of a manifest's sidecars), the
    pipeline's example; without one (an older build), a description in the corpus' wording."""
    root, _ = parts
    metas = [dict(instrument=ins, instrument_family=fam, era="folk", genre="jig", composer="", bpm=bpm, key="D",
                  mode="minor", meter="6/8") for ins, fam, bpm in
             [("flute", "pipe", 120.0), ("flute", "pipe", 132.0), ("oboe", "reed", 100.0)]]
    lines = []
    for i, m in enumerate(metas):
        (tmp_path / f"c{i}.json").write_text(json.dumps({**m, "description": describe(m, i)}))
        lines.append(json.dumps({"path": str(tmp_path / f"c{i}.wav"), "info_path": str(tmp_path / f"c{i}.json")}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    out = build.assemble(tmp_path / "weights", lm=root / "train", codec=root / "codec", t5=root / "t5",
                         train_manifest=tmp_path / "train.jsonl")
    example = json.loads((out / package.INFO).read_text())[package.EXAMPLE_KEY]
    assert "flute" in example and "120 bpm" in example and "D minor" in example and "jig" in example, example
    assert MagnetPipeline.from_pretrained(str(out)).example_description == example
    older = build.assemble(tmp_path / "older", lm=root / "train", codec=root / "codec", t5=root / "t5")
    assert package.EXAMPLE_KEY not in json.loads((older / package.INFO).read_text())     # no training clips found
    assert MagnetPipeline.from_pretrained(str(older)).example_description == package.FALLBACK_EXAMPLE


def test_assemble_refuses_parts_that_do_not_fit(parts, tmp_path):
    root, _ = parts
    other = random_encodec(sample_rate=16000, frame_rate=50, num_codebooks=4, bins=32, seed=1)
    export_codec(other, tmp_path / "codec32", "transformers")
    with pytest.raises(ValueError, match="4 x 32 codes"):
        build.assemble(tmp_path / "w", lm=root / "train", codec=tmp_path / "codec32", t5=root / "t5")
    with pytest.raises(FileNotFoundError, match="no LM export"):
        build.assemble(tmp_path / "w", lm=tmp_path, codec=root / "codec", t5=root / "t5")
    assert not (tmp_path / "w").exists()


def test_bundled_name_resolves_to_the_package_folder(parts, tmp_path, monkeypatch):
    root, _ = parts
    monkeypatch.setattr(package, "WEIGHTS_DIR", tmp_path / "missing")
    with pytest.raises(package.BundledMissingError, match="make_bundled.sh"):
        MagnetPipeline.from_pretrained("bundled")
    monkeypatch.setattr(package, "WEIGHTS_DIR", build.assemble(tmp_path / "pkg", lm=root / "train",
                                                               codec=root / "codec", t5=root / "t5"))
    assert package.resolve("bundled") == tmp_path / "pkg"
    assert MagnetPipeline.from_pretrained("bundled").lm.config.dim == 32
    assert package.resolve(str(root / "t5")) is None                         # not the layout: other loaders
    assert bconfig.WEIGHTS_DIR.name == "weights" and get_config("bundled").model.text_dim == 128


def test_assemble_records_decoding_defaults_the_loader_applies(parts, tmp_path):
    """bundled.json's generation: the knobs over the music defaults the folder's weights decode with (the bundled
    preset's by default, the same as from_config("bundled")); an older folder gets the music defaults; a knob the
    generation config lacks is refused at assembly and, in a hand-edited file, at load, naming the file."""
    root, _ = parts
    out = build.assemble(tmp_path / "w", lm=root / "train", codec=root / "codec", t5=root / "t5")
    info = json.loads((out / package.INFO).read_text())
    assert info[package.GENERATION_KEY] == presets.BUNDLED_GENERATION == {"max_cfg_coef": 3.0,
                                                                         "span_arrangement": "stride1"}
    pipe = MagnetPipeline.from_pretrained(str(out))
    music = GenerationConfig.music(1.0)
    assert pipe.generation == music.replace(max_cfg_coef=3.0, span_arrangement="stride1") != music
    cfg = MagnetPipeline.from_config("bundled").generation          # a 10 s model: its own step counts
    assert (cfg.max_cfg_coef, cfg.span_arrangement) == (3.0, "stride1")
    own = build.assemble(tmp_path / "own", lm=root / "train", codec=root / "codec", t5=root / "t5",
                         generation={"top_p": 0.8})
    assert MagnetPipeline.from_pretrained(str(own)).generation == music.replace(top_p=0.8)
    info.pop(package.GENERATION_KEY)                                                  # an older bundled.json
    (out / package.INFO).write_text(json.dumps(info))
    assert MagnetPipeline.from_pretrained(str(out)).generation == music
    with pytest.raises(ValueError, match="not GenerationConfig fields"):
        build.assemble(tmp_path / "bad", lm=root / "train", codec=root / "codec", t5=root / "t5",
                       generation={"cfg_coef": 3.0})
    assert not (tmp_path / "bad").exists()
    for bad, msg in (({"cfg_coef": 3.0}, "not GenerationConfig fields"), ({"top_p": 2.0}, "top_p must be"),
                     ([3.0], "must map decoding knobs")):
        (out / package.INFO).write_text(json.dumps({**info, package.GENERATION_KEY: bad}))
        with pytest.raises(ValueError, match=msg) as e:
            MagnetPipeline.from_pretrained(str(out))
        assert package.INFO in str(e.value)
