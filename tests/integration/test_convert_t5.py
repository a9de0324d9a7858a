"""Hugging Face T5 files -> T5Encoder without torch: name mapping, sharded indexes, the T5 table."""
from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from magnet_jax.convert.t5 import load_t5_encoder, load_text_stack
from magnet_jax.hub import HubError
from magnet_jax.text import T5Encoder, T5EncoderConfig
from magnet_jax.text.presets import T5_MODELS, WIDTHS, canonical_t5_name, t5_hub_candidates

CFG = dict(vocab_size=40, d_model=16, d_kv=4, num_heads=2, d_ff=24, num_layers=2, feed_forward_proj="gated-gelu",
           relative_attention_num_buckets=8, relative_attention_max_distance=16)


def _hf_tensors(mod: T5Encoder) -> dict[str, np.ndarray]:
    """transformers' T5EncoderModel names for a T5Encoder's params (the inverse of params_from_hf)."""
    p = {k: np.asarray(v) for k, v in nnx.to_pure_dict(nnx.state(mod, nnx.Param)).items()}
    out = {"shared.weight": p["embed_tokens"],
           "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": p["relative_attention_bias"],
           "encoder.final_layer_norm.weight": p["final_norm"]}
    for i in range(mod.config.num_layers):
        a, f = f"encoder.block.{i}.layer.0.", f"encoder.block.{i}.layer.1."
        out[a + "layer_norm.weight"], out[f + "layer_norm.weight"] = p["attn_norm"][i], p["ffn_norm"][i]
        for n in "qkvo":
            out[a + f"SelfAttention.{n}.weight"] = np.ascontiguousarray(p[n][i].T)
        for n in ("wi_0", "wi_1", "wo"):
            out[f + f"DenseReluDense.{n}.weight"] = np.ascontiguousarray(p[n][i].T)
    return out


@pytest.fixture(scope="module")
def model():
    return T5Encoder(T5EncoderConfig(**CFG), rngs=nnx.Rngs(3))


def _folder(path, model, shards=None):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "t5", **CFG}))
    tensors = _hf_tensors(model)
    if shards is None:
        save_file(tensors, str(path / "model.safetensors"))
        return path
    names = sorted(tensors)
    half = len(names) // 2
    for shard, part in zip(shards, (names[:half], names[half:])):
        if "/" not in shard and ".." not in shard:
            save_file({n: tensors[n] for n in part}, str(path / shard))
    weight_map = {n: shards[0] if i < half else shards[1] for i, n in enumerate(names)}
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return path


def test_round_trip(tmp_path, model):
    ids = jnp.array([[5, 6, 7, 1], [9, 1, 0, 0]], jnp.int32)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], jnp.int32)
    want = np.asarray(model(ids, mask))
    for name, shards in (("single", None), ("sharded", ["model-00001-of-00002.safetensors",
                                                        "model-00002-of-00002.safetensors"])):
        enc = load_t5_encoder(str(_folder(tmp_path / name, model, shards)))
        got = nnx.to_pure_dict(nnx.state(enc.module, nnx.Param))
        for k, v in nnx.to_pure_dict(nnx.state(model, nnx.Param)).items():
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(v), err_msg=k)
        np.testing.assert_allclose(np.asarray(enc(ids, mask)), want, atol=1e-6, rtol=0)   # jit vs eager


@pytest.mark.parametrize("bad", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors", "C:x", "~/x"])
def test_index_shards_outside_the_folder_are_refused(tmp_path, model, bad):
    (tmp_path / "outside.safetensors").write_bytes(b"")
    folder = _folder(tmp_path / "m", model, ["model-00001-of-00002.safetensors", bad])
    with pytest.raises(HubError, match="points outside the model folder"):
        load_t5_encoder(str(folder))


def test_t5_table_covers_audiocraft_names():
    """Every name audiocraft's T5Conditioner accepts (T5Conditioner.MODELS), with its real width."""
    audiocraft_models = ["t5-small", "t5-base", "t5-large", "t5-3b", "t5-11b", "google/flan-t5-small",
                         "google/flan-t5-base", "google/flan-t5-large", "google/flan-t5-xl", "google/flan-t5-xxl"]
    assert sorted(T5_MODELS) == sorted(audiocraft_models)
    assert [WIDTHS[n] for n in audiocraft_models] == [512, 768, 1024, 1024, 1024, 512, 768, 1024, 2048, 4096]
    assert canonical_t5_name("google-t5/t5-large") == "t5-large" and canonical_t5_name("bert-base") is None
    assert t5_hub_candidates("t5-base") == ["google-t5/t5-base", "t5-base"]
    assert t5_hub_candidates("google/flan-t5-base") == ["google/flan-t5-base"]


def test_tiny_text_stack_is_seeded():
    tok, a = load_text_stack("tiny", 24)
    _, b = load_text_stack("tiny", 24)
    ids = jnp.array([[4, 5, 1]], jnp.int32)
    assert a.dim == 24 and len(tok) == 132
    np.testing.assert_array_equal(np.asarray(a(ids)), np.asarray(b(ids)))
