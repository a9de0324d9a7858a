"""Inference codec and its converters without the reference stack (random-weight codec): chunked coding
policy, fresh weights at every call, the pure state-dict mappings (both namings) and file round trips
through the exporters and ``load_encodec`` (torch-free)."""
import numpy as np
import pytest
from flax import nnx

from magnet_jax.codec import Encodec
from magnet_jax.codec.random_init import random_encodec
from magnet_jax.convert._torch import load_torch_file
from magnet_jax.convert._torch_write import save_torch_file
from magnet_jax.convert.encodec import _canonical_native, _fuse_weight_norm, load_encodec, params_from_state_dict
from magnet_jax.convert.encodec_export import export_codec, state_dict

SR = 8000


@pytest.fixture(scope="module")
def codec():
    return random_encodec(sample_rate=SR, frame_rate=250, num_codebooks=3, bins=32, n_filters=4, dimension=8)


def _wav(codec, n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900, (2, 1, 1)) * t) + 0.05 * rng.standard_normal((2, 1, n))
    return x.astype(np.float32)


def test_chunked_equals_whole_clip(codec):
    wav = _wav(codec, 40 * codec.hop_length + 7)
    whole = np.asarray(codec.encode(wav, chunk_seconds=None))
    assert len(np.unique(whole)) > 5
    audio = np.asarray(codec.decode(whole, chunk_seconds=None))
    for frames in (5, 11):
        cs = frames / codec.frame_rate
        np.testing.assert_array_equal(np.asarray(codec.encode(wav, chunk_seconds=cs)), whole)
        assert np.abs(np.asarray(codec.decode(whole, chunk_seconds=cs)) - audio).max() <= 1e-5


def test_weights_are_read_at_every_call(codec):
    """In-place weight changes are seen (the jitted programs used to snapshot the first weights)."""
    net = nnx.clone(codec.net)
    other = Encodec(codec.config, net)
    wav = _wav(codec, 20 * codec.hop_length)
    before = np.asarray(other.encode(wav))
    net.quantizer.embed[...] = net.quantizer.embed[...][:, ::-1]  # reverse every codebook
    after = np.asarray(other.encode(wav))
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, np.asarray(Encodec(codec.config, net).encode(wav)))
    np.testing.assert_array_equal(after[:, 0], 31 - before[:, 0])  # level 0: the same entries, reversed


def _params(codec):
    return nnx.to_pure_dict(nnx.state(codec.net))


def _assert_same(a, b):
    fa, fb = nnx.traversals.flatten_mapping(a), nnx.traversals.flatten_mapping(b)
    assert set(fa) == set(fb)
    for k in fa:
        np.testing.assert_allclose(np.asarray(fa[k]), np.asarray(fb[k]), rtol=1e-6, atol=1e-7, err_msg=str(k))


@pytest.mark.parametrize("fmt", ["transformers", "audiocraft"])
def test_state_dict_mapping_round_trip(codec, fmt):
    sd = state_dict(codec, fmt)
    canonical = _fuse_weight_norm(sd) if fmt == "transformers" else _canonical_native(sd)
    _assert_same(params_from_state_dict(canonical, codec.config), _params(codec))


def test_mapping_errors_name_the_tensor(codec):
    sd = _fuse_weight_norm(state_dict(codec, "transformers"))
    extra = dict(sd, **{"foo.bar": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="unused checkpoint tensors.*foo.bar"):
        params_from_state_dict(extra, codec.config)
    missing = dict(sd)
    del missing["decoder.layers.0.conv.bias"]
    with pytest.raises(KeyError, match="decoder.layers.0.conv.bias"):
        params_from_state_dict(missing, codec.config)
    bad = dict(sd, **{"encoder.layers.0.conv.bias": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"encoder.layers.0.bias: checkpoint shape \(3,\)"):
        params_from_state_dict(bad, codec.config)


@pytest.mark.parametrize("fmt", ["transformers", "audiocraft"])
def test_export_files_load_back(codec, tmp_path, fmt):
    out = export_codec(codec, tmp_path / fmt, fmt)
    back = load_encodec(out)
    assert back.config.replace(name="x") == codec.config.replace(name="x")
    wav = _wav(codec, 9 * codec.hop_length + 3, seed=2)
    np.testing.assert_array_equal(np.asarray(back.encode(wav)), np.asarray(codec.encode(wav)))
    _assert_same(_params(back), _params(codec))


def test_torch_writer_round_trip(tmp_path):
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.ones(3, np.int64), "d": "x"},
           "e": [np.zeros((0,), np.float32), 1.5, True]}
    save_torch_file(obj, tmp_path / "f.bin")
    back = load_torch_file(tmp_path / "f.bin")
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["a"].dtype == np.float32 and back["b"]["c"].dtype == np.int64 and back["b"]["d"] == "x"
    assert back["e"][1:] == [1.5, True] and back["e"][0].shape == (0,)


def test_input_validation(codec):
    with pytest.raises(ValueError, match=r"\[B, C, N\]"):
        codec.encode(np.zeros((100,), np.float32))
    with pytest.raises(ValueError, match="1-channel"):
        codec.encode(np.zeros((1, 2, 100), np.float32))
    with pytest.raises(ValueError, match="codebooks"):
        codec.decode(np.zeros((1, 9, 10), np.int32))
