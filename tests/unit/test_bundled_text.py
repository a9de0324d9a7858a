"""Bundled text encoder: corpus-trained Unigram tokenizer + frozen random T5, read by the released-model loader."""
import json

import numpy as np
import pytest

from magnet_jax.bundled.descriptions import INSTRUMENTS, describe
from magnet_jax.bundled.text import build_text_encoder, read_descriptions
from magnet_jax.convert.t5 import load_text_stack, read_hf_t5_weights
from magnet_jax.text import tokenize

META = [dict(instrument=name, genre=g, era=e, composer=c, bpm=b, key=k, mode=m, meter="3/4")
        for (name, _), g, e, c, b, k, m in zip(INSTRUMENTS.values(), ["chorale", "folk tune", "madrigal"] * 9,
                                               ["baroque", "renaissance", "classical"] * 9,
                                               ["Bach", "", "Palestrina"] * 9, range(60, 200, 5),
                                               ["C", "F#", "Bb", "E", "Ab", "D"] * 5, ["major", "minor"] * 14)]
DESCS = [describe(m, seed=i) for i, m in enumerate(META)]


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return build_text_encoder(DESCS, tmp_path_factory.mktemp("t5"))


def test_tokenizer_round_trips_corpus_words_without_unk(t5_dir):
    tok, _ = load_text_stack(str(t5_dir), 128)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    for text in DESCS + ["Xylophone, 333 bpm; unseen-word zq!"]:   # unseen words: pieces, never <unk>
        ids = tok(text).input_ids
        assert tok.unk_token_id not in ids, text
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_folder_is_hf_t5_layout_and_loads_through_released_path(t5_dir):
    cfg, tensors = read_hf_t5_weights(str(t5_dir))
    assert cfg["model_type"] == "t5" and cfg["d_model"] == 128 and cfg["num_layers"] == 2
    assert "encoder.block.1.layer.1.DenseReluDense.wo.weight" in tensors and "shared.weight" in tensors
    tok, enc = load_text_stack(str(t5_dir), 128)
    assert enc.dim == 128 and cfg["vocab_size"] == len(tok)
    with pytest.raises(ValueError, match="text_dim=64"):
        load_text_stack(str(t5_dir), 64)


def test_different_descriptions_give_different_features_and_same_ones_the_same(t5_dir):
    tok, enc = load_text_stack(str(t5_dir), 128)
    texts = ["slow cello chorale in C minor, 60 bpm", "fast trumpet chorale in C minor, 60 bpm",
             "slow cello chorale in C major, 60 bpm", "slow cello chorale in C minor, 60 bpm"]
    ids, mask = tokenize(tok, texts)
    h = np.asarray(enc(ids, mask))
    m = np.asarray(mask)[..., None]
    pooled = (h * m).sum(1) / m.sum(1)
    assert np.isfinite(h).all()
    np.testing.assert_allclose(pooled[0], pooled[3], atol=1e-6)         # deterministic
    for j in (1, 2):                                                     # one word changed -> features move
        assert np.abs(pooled[0] - pooled[j]).max() > 1e-2
    _, enc2 = load_text_stack(str(t5_dir), 128)                          # fixed weights: same in every process
    np.testing.assert_array_equal(np.asarray(enc2(ids, mask)), h)


def test_read_descriptions_from_manifest_and_sidecars(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"description": "from the sidecar"}))
    lines = [{"path": str(tmp_path / "a.wav"), "duration": 1.0},
             {"path": str(tmp_path / "b.wav"), "duration": 1.0, "description": "in the line"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert read_descriptions(tmp_path / "m.jsonl") == ["from the sidecar", "in the line"]
