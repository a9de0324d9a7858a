"""T5 encoder + tokenizer: parity with transformers' T5EncoderModel and audiocraft's T5Conditioner.

All models are tiny and randomly initialised (the hub is offline in tests); the tokenizer is the packaged
tiny one (``magnet_jax/text/assets/tiny_t5_tokenizer``). Tokenizer-only tests: tests/unit/test_t5_tokenizer.py.
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

from magnet_jax.convert import load_t5_encoder
from magnet_jax.text import HubError, load_t5_tokenizer, relative_position_buckets, tokenize
from magnet_jax.text.presets import TINY_TOKENIZER
from tests.reference import shim  # noqa: F401  (before transformers is imported: placeholders for broken extras)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER_DIR = str(TINY_TOKENIZER)
VOCAB = 132  # size of the packaged tiny tokenizer (128 pieces + 4 sentinels)
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
    from transformers import T5Config
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
    from transformers import T5EncoderModel, T5ForConditionalGeneration
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
    _save(hf, str(tmp_path / "bf16_bin"), "bin")          # pytorch_model.bin in bfloat16 (torch-free reader)
    hf = hf.float()
    ids, mask = _batch(np.random.default_rng(3), 2, 6)
    for folder in ("bf16", "bf16_bin"):
        got = np.asarray(load_t5_encoder(str(tmp_path / folder))(ids, mask))
        assert np.abs(got - _hf_hidden(hf, ids, mask)).max() <= TOL, folder


def test_relative_position_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention
    for nb, md in [(32, 128), (8, 20), (16, 32), (32, 64)]:
        S = 300
        rel = torch.arange(S)[None, :] - torch.arange(S)[:, None]
        ref = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=nb, max_distance=md)
        np.testing.assert_array_equal(relative_position_buckets(S, S, nb, md), ref.numpy())


# ------------------------------------------------------------------------------------ tokenizer
TEXTS = ["a calm piano melody", None, "", "energetic rock song with drums and electric guitar", "zebra?!"]


@pytest.fixture(scope="module")
def t5_tokenizer():
    return load_t5_tokenizer(TOKENIZER_DIR)


def test_matches_audiocraft_t5_conditioner(t5_tokenizer, checkpoints, monkeypatch):
    """audiocraft's real T5Conditioner (tokenizer / T5 loading redirected to the tiny offline ones):
    same ids and masks (incl. None / "" rows), and our encoder on them == its T5 on them."""
    from types import SimpleNamespace

    from audiocraft.modules import conditioners  # the shim (imported above) precedes it
    from transformers import T5EncoderModel

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
def test_offline_hub_errors(tmp_path, monkeypatch):
    from huggingface_hub import constants
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
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


def test_safetensors_and_bin_load_without_torch(checkpoints):
    """Both weight formats load where torch cannot be imported (pytorch_model.bin via the torch-free reader)."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from magnet_jax.convert import load_t5_encoder\n"
        "from magnet_jax.text import load_t5_tokenizer, tokenize\n"
        f"ids, mask = tokenize(load_t5_tokenizer({TOKENIZER_DIR!r}), ['a calm piano', None])\n"
        f"a = np.asarray(load_t5_encoder({checkpoints['relu'][1]!r})(ids, mask))\n"
        f"b = np.asarray(load_t5_encoder({checkpoints['relu_bin'][1]!r})(ids, mask))\n"
        "assert a.shape == (2, ids.shape[1], 32) and np.isfinite(a).all() and (a == b).all()\n"
        "assert 'torch' not in [m.split('.')[0] for m, v in sys.modules.items() if v is not None]\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
