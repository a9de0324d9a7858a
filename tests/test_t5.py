"""T5 text encoder + tokenizer: parity with transformers' T5EncoderModel and audiocraft's T5Conditioner.

All models are tiny and randomly initialised (the hub is offline in tests); the tokenizer is the
committed fixture ``tests/fixtures/t5_tokenizer`` (regenerate with ``tests/fixtures/make_t5_tokenizer.py``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration

from magnet_jax.text import (HubError, T5Encoder, T5EncoderConfig, T5Tokenize, load_t5_encoder, load_t5_tokenizer,
                             relative_position_buckets, tokenize)

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_DIR = os.path.join(HERE, "fixtures", "t5_tokenizer")
VOCAB = 132  # size of the fixture tokenizer (128 pieces + 4 sentinels)
TOL = 1e-5

CONFIGS = {
    # original T5 (t5-base style): relu DenseReluDense, 32 buckets / 128, d_kv * heads != d_model
    "relu": dict(d_model=32, d_kv=12, num_heads=3, d_ff=64, num_layers=2, feed_forward_proj="relu"),
    # T5 v1.1 / flan style: gated-gelu (gelu_new), few buckets and a short max_distance
    "gated_gelu": dict(d_model=48, d_kv=16, num_heads=4, d_ff=80, num_layers=3, feed_forward_proj="gated-gelu",
                       relative_attention_num_buckets=8, relative_attention_max_distance=20),
    # another activation / bucket layout, single layer
    "gated_silu": dict(d_model=24, d_kv=6, num_heads=2, d_ff=40, num_layers=1, feed_forward_proj="gated-silu",
                       relative_attention_num_buckets=16, relative_attention_max_distance=32),
}


def _hf_config(**kw):
    return T5Config(vocab_size=VOCAB, dropout_rate=0.0, **kw)


def _save(model, path, fmt):
    """save_pretrained (safetensors) or an old-style pytorch_model.bin with every key."""
    if fmt == "safetensors":
        model.save_pretrained(path)
    else:
        os.makedirs(path, exist_ok=True)
        model.config.save_pretrained(path)
        torch.save(model.state_dict(), os.path.join(path, "pytorch_model.bin"))
    return path


def _batch(rng, B, S, zero_row=True):
    """Random ids with right padding of varied lengths, one all-zero mask row (null text)."""
    ids = rng.integers(3, VOCAB, size=(B, S))
    lengths = rng.integers(1, S + 1, size=B)
    lengths[0] = S
    mask = (np.arange(S)[None] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, 0)
    ids[np.arange(B), lengths - 1] = 1  # </s>
    if zero_row and B > 1:
        ids[-1] = 0
        ids[-1, 0] = 1
        mask[-1] = 0
    return ids, mask


def _hf_hidden(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)).last_hidden_state.numpy()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{name: (hf_model, dir)} for the encoder-only configs (in both formats) and a full seq2seq model."""
    import transformers
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("t5")
    out = {}
    for i, (name, kw) in enumerate(CONFIGS.items()):
        m = T5EncoderModel(_hf_config(**kw)).eval()
        fmt = "bin" if name == "gated_gelu" else "safetensors"
        out[name] = (m, _save(m, str(root / f"{name}_{fmt}"), fmt))
        if name == "relu":  # the same weights as .bin as well
            out["relu_bin"] = (m, _save(m, str(root / "relu_bin"), "bin"))
    full = T5ForConditionalGeneration(_hf_config(**CONFIGS["relu"], num_decoder_layers=1)).eval()
    out["seq2seq"] = (full.encoder, _save(full, str(root / "seq2seq"), "safetensors"))
    return out


@pytest.mark.parametrize("name", ["relu", "relu_bin", "gated_gelu", "gated_silu", "seq2seq"])
def test_parity_with_transformers(checkpoints, name):
    hf, path = checkpoints[name]
    enc = load_t5_encoder(path)
    assert enc.dim == hf.config.d_model
    rng = np.random.default_rng(0)
    worst = 0.0
    for B, S in [(1, 5), (3, 11), (2, 41)]:  # 41 > max_distance of the small bucket configs
        ids, mask = _batch(rng, B, S)
        ref = _hf_hidden(hf, ids, mask)
        got = np.asarray(enc(ids.astype(np.int32), mask.astype(np.int32)))
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.isfinite(got).all()
        worst = max(worst, float(np.abs(got - ref).max()))
    print(f"{name}: max |diff| = {worst:.2e}")
    assert worst <= TOL


def test_module_eager_and_no_mask(checkpoints):
    """The NNX module itself (no jit), and attention_mask=None == all ones."""
    hf, path = checkpoints["relu"]
    mod = load_t5_encoder(path).module
    ids, _ = _batch(np.random.default_rng(1), 2, 7, zero_row=False)
    ref = _hf_hidden(hf, ids, np.ones_like(ids))
    np.testing.assert_allclose(np.asarray(mod(jnp.asarray(ids))), ref, atol=TOL, rtol=0)


def test_bfloat16_close(checkpoints):
    hf, path = checkpoints["gated_gelu"]
    ids, mask = _batch(np.random.default_rng(2), 3, 9)
    ref = _hf_hidden(hf, ids, mask)
    got = np.asarray(load_t5_encoder(path, dtype=jnp.bfloat16)(ids, mask))
    assert got.dtype == np.float32
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"bf16 compute: max |diff| / max |ref| = {rel:.2e}")
    assert rel < 3e-2


def test_bfloat16_checkpoint(checkpoints, tmp_path):
    """A checkpoint stored in bfloat16 (read without torch via ml_dtypes) loads into float32 exactly."""
    import copy
    hf = copy.deepcopy(checkpoints["gated_silu"][0]).to(torch.bfloat16)
    hf.save_pretrained(str(tmp_path / "bf16"))
    hf = hf.float()
    ids, mask = _batch(np.random.default_rng(3), 2, 6)
    got = np.asarray(load_t5_encoder(str(tmp_path / "bf16"))(ids, mask))
    assert np.abs(got - _hf_hidden(hf, ids, mask)).max() <= TOL


def test_relative_position_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention
    for nb, md in [(32, 128), (8, 20), (16, 32), (32, 64)]:
        S = 300
        rel = torch.arange(S)[None, :] - torch.arange(S)[:, None]
        ref = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=nb, max_distance=md)
        np.testing.assert_array_equal(relative_position_buckets(S, S, nb, md), ref.numpy())


def test_random_init_module_runs():
    cfg = T5EncoderConfig(vocab_size=VOCAB, **CONFIGS["gated_gelu"])
    from flax import nnx
    mod = T5Encoder(cfg, rngs=nnx.Rngs(0))
    out = mod(jnp.ones((2, 4), jnp.int32), jnp.array([[1, 1, 1, 0], [0, 0, 0, 0]]))
    assert out.shape == (2, 4, 48) and bool(jnp.isfinite(out).all())


# ------------------------------------------------------------------------------------ tokenizer
TEXTS = ["a calm piano melody", None, "", "energetic rock song with drums and electric guitar", "zebra?!"]


@pytest.fixture(scope="module")
def t5_tokenizer():
    return load_t5_tokenizer(TOKENIZER_DIR)


def test_tokenize_semantics(t5_tokenizer):
    ids, mask = tokenize(t5_tokenizer, TEXTS)
    assert ids.dtype == np.int32 and mask.dtype == np.int32
    ref = t5_tokenizer(["" if t is None else t for t in TEXTS])  # unpadded rows
    S = max(len(r) for r in ref.input_ids)
    assert ids.shape == (5, S)
    for i, t in enumerate(TEXTS):
        row = ref.input_ids[i]
        assert row[-1] == t5_tokenizer.eos_token_id == 1
        np.testing.assert_array_equal(ids[i, :len(row)], row)
        assert (ids[i, len(row):] == 0).all()
        assert mask[i].sum() == (0 if not t else len(row))
    # all null: S = 1 (just </s>), mask all zero
    ids0, mask0 = tokenize(t5_tokenizer, [None, ""])
    assert ids0.tolist() == [[1], [1]] and mask0.tolist() == [[0], [0]]


def test_tokenize_pad_to(t5_tokenizer, checkpoints):
    ids, mask = tokenize(t5_tokenizer, TEXTS)
    S = ids.shape[1]
    ids2, mask2 = T5Tokenize(t5_tokenizer, pad_to=S + 6)(TEXTS)
    assert ids2.shape == (5, S + 6)
    np.testing.assert_array_equal(ids2[:, :S], ids)
    np.testing.assert_array_equal(mask2[:, :S], mask)
    assert (ids2[:, S:] == 0).all() and (mask2[:, S:] == 0).all()
    # extra padding does not change the hidden states of real tokens
    enc = load_t5_encoder(checkpoints["relu"][1])
    h, h2 = np.asarray(enc(ids, mask)), np.asarray(enc(ids2, mask2))
    real = mask.astype(bool)
    np.testing.assert_allclose(h2[:, :S][real], h[real], atol=TOL, rtol=0)
    # truncation == the tokenizer's own truncation (keeps </s>)
    ids3, mask3 = tokenize(t5_tokenizer, TEXTS, pad_to=8)
    ref = t5_tokenizer(["" if t is None else t for t in TEXTS], padding="max_length", truncation=True,
                       max_length=8, return_tensors="np")
    np.testing.assert_array_equal(ids3, ref["input_ids"])
    np.testing.assert_array_equal(mask3, np.where([[bool(t)] for t in TEXTS], ref["attention_mask"], 0))


def test_word_dropout(t5_tokenizer):
    import random
    ids, mask = tokenize(t5_tokenizer, ["a b c d e f", "x"], word_dropout=1.0, rng=random.Random(0))
    assert mask.sum() == 0  # every word dropped -> empty -> null rows
    ids, mask = tokenize(t5_tokenizer, ["a b c"], word_dropout=0.5, rng=random.Random(0))
    assert mask.sum() >= 1


def test_matches_audiocraft_t5_conditioner(t5_tokenizer, checkpoints, monkeypatch):
    """audiocraft's real T5Conditioner (tokenizer / T5 loading redirected to the tiny offline ones):
    same ids and masks (incl. None / "" rows), and our encoder on them == its T5 on them."""
    import tests.reference.shim  # noqa: F401  (before audiocraft)
    from types import SimpleNamespace

    from audiocraft.modules import conditioners

    hf, path = checkpoints["gated_gelu"]
    monkeypatch.setattr(conditioners, "T5Tokenizer", SimpleNamespace(from_pretrained=lambda name: t5_tokenizer))
    monkeypatch.setattr(conditioners, "T5EncoderModel",
                        SimpleNamespace(from_pretrained=lambda name: T5EncoderModel.from_pretrained(path)))
    cond = conditioners.T5Conditioner("t5-base", output_dim=16, finetune=False, device="cpu").eval()
    enc = load_t5_encoder(path)
    for texts in (TEXTS, [None, None], ["lo-fi hip hop beat", ""], ["birds chirping in a forest at dawn"]):
        inputs = cond.tokenize(list(texts))
        ids, mask = tokenize(t5_tokenizer, texts)
        np.testing.assert_array_equal(ids, inputs["input_ids"].numpy())
        np.testing.assert_array_equal(mask, inputs["attention_mask"].numpy())
        with torch.no_grad():
            ref = cond.t5(**inputs).last_hidden_state.numpy()
        assert np.abs(np.asarray(enc(ids, mask)) - ref).max() <= TOL


# ------------------------------------------------------------------------------------ errors
def test_offline_hub_errors():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(HubError, match="local folder"):
        load_t5_encoder("google-t5/t5-base")
    with pytest.raises(HubError, match="local folder"):
        load_t5_tokenizer("google-t5/t5-base")


def test_not_t5_errors(tmp_path, checkpoints):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(HubError, match="not a T5 checkpoint"):
        load_t5_encoder(str(bert))
    dec = tmp_path / "dec"
    dec.mkdir()
    (dec / "config.json").write_text(json.dumps({"model_type": "t5", "is_decoder": True}))
    with pytest.raises(HubError, match="decoder"):
        load_t5_encoder(str(dec))
    empty = tmp_path / "noweights"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(HubError, match="model.safetensors"):
        load_t5_encoder(str(empty))
    # config / weights mismatch (gated config, relu weights)
    cfg = json.load(open(os.path.join(checkpoints["relu"][1], "config.json")))
    mism = tmp_path / "mismatch"
    mism.mkdir()
    (mism / "config.json").write_text(json.dumps({**cfg, "feed_forward_proj": "gated-gelu"}))
    os.symlink(os.path.join(checkpoints["relu"][1], "model.safetensors"), mism / "model.safetensors")
    with pytest.raises(HubError, match="gated"):
        load_t5_encoder(str(mism))


def test_import_and_safetensors_load_without_torch(checkpoints):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from magnet_jax.text import load_t5_encoder, load_t5_tokenizer, tokenize\n"
        f"enc = load_t5_encoder({checkpoints['relu'][1]!r})\n"
        f"ids, mask = tokenize(load_t5_tokenizer({TOKENIZER_DIR!r}), ['a calm piano', None])\n"
        "h = np.asarray(enc(ids, mask)); assert h.shape == (2, ids.shape[1], 32) and np.isfinite(h).all()\n"
        "assert 'torch' not in [m.split('.')[0] for m, v in sys.modules.items() if v is not None]\n"
    )
    env = {**os.environ, "PYTHONPATH": os.path.dirname(HERE), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
