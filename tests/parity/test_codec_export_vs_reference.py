"""A codec trained here, exported, read by the reference loaders: transformers'
``EncodecModel.from_pretrained`` (transformers layout) and audiocraft's ``load_compression_model``
(native ``compression_state_dict.bin``) give the same codes as our model and decode within 1e-4;
our own ``load_encodec`` reads both exports back."""
# ruff: noqa: I001  (the reference shim must be imported before audiocraft)
import numpy as np
import pytest

import tests.reference.shim  # noqa: F401  (before audiocraft)
import jax  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402

from magnet_jax.codec import (  # noqa: E402
    CodebookState, CodecConfig, SeanetConfig, codec_train_forward, export_inference_codec, init_trainable_codec)
from magnet_jax.convert.encodec import load_encodec  # noqa: E402
from magnet_jax.convert.encodec_export import export_codec  # noqa: E402
from tests.reference import encodec_ref as R  # noqa: E402

ATOL = 1e-4

ARCHS = {
    # non-causal, mono, weight norm on every conv (the MusicGen / MAGNeT tokenizer's shape)
    "noncausal_mono": dict(side=dict(channels=1, dimension=16, n_filters=4, ratios=(4, 2, 2), lstm=1), sr=8000,
                           top=dict(total_codebooks=3, num_codebooks=3, bins=32)),
    # causal, stereo, conv shortcuts, no norm on the outer blocks, 2 LSTM layers (audiocraft: causal models
    # cannot renormalize)
    "causal_stereo_outer": dict(side=dict(channels=2, dimension=8, n_filters=4, ratios=(3, 2), lstm=2, causal=True,
                                          true_skip=False, disable_norm_outer_blocks=1, pad_mode="constant"),
                                sr=6000, top=dict(total_codebooks=2, num_codebooks=2, bins=16)),
    # renormalized input, time group norm
    "groupnorm_renorm": dict(side=dict(channels=1, dimension=8, n_filters=4, ratios=(2, 2), lstm=1,
                                       norm="time_group_norm", pad_mode="reflect"),
                             sr=4000, top=dict(total_codebooks=2, num_codebooks=2, bins=16, renormalize=True)),
}


def _trained(name):
    """A trainable codec after two training forwards (k-means-initialised, EMA-updated codebooks)."""
    a = ARCHS[name]
    side = SeanetConfig(**a["side"])
    cfg = CodecConfig(sample_rate=a["sr"], encoder=side, decoder=side, name=name, **a["top"])
    g, p, cb = nnx.split(init_trainable_codec(cfg, jax.random.key(0)), nnx.Param, CodebookState)
    wav = R.test_signal("mix", 4, side.channels, 2003, a["sr"], seed=1)
    fwd = jax.jit(codec_train_forward, static_argnames=("train", "quantizer_dropout"))
    for step in range(2):
        _, aux = fwd(g, p, cb, wav, jax.random.key(step), train=True, quantizer_dropout=False)
        cb = aux["codebook_state"]
    return g, p, cb


@pytest.fixture(scope="module", params=list(ARCHS))
def trained(request, tmp_path_factory):
    g, p, cb = _trained(request.param)
    out = tmp_path_factory.mktemp(request.param)
    return export_inference_codec(g, p, cb), (g, p, cb), out


def _signal(codec, seed):
    return R.test_signal("mix", 2, codec.channels, 7 * codec.hop_length + 5, codec.sample_rate, seed=seed)


def test_transformers_reads_our_export(trained):
    from transformers import EncodecModel
    ours, triple, out = trained
    path = export_codec(triple, out / "hf", "transformers")
    ref, info = EncodecModel.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ref.eval()
    assert ref.config.num_quantizers == ours.total_codebooks
    wav = _signal(ours, 3)
    ref_codes, ref_audio = R.hf_encode_decode(ref, wav, ref.config.target_bandwidths[-1])
    assert len(np.unique(ref_codes)) > 3
    codes, scale = ours.encode_with_scale(wav)
    np.testing.assert_array_equal(np.asarray(codes), ref_codes)
    audio = np.asarray(ours.decode(codes, scale))
    assert np.abs(audio - ref_audio).max() <= ATOL
    back = load_encodec(path)  # and our own loader
    np.testing.assert_array_equal(np.asarray(back.encode(wav)), ref_codes)
    assert np.abs(np.asarray(back.decode(codes, scale)) - audio).max() <= 1e-5


def test_audiocraft_reads_our_export(trained):
    from audiocraft.models.loaders import load_compression_model
    ours, triple, out = trained
    path = export_codec(triple, out / "ac", "audiocraft")
    f = path / "compression_state_dict.bin"
    pkg = torch.load(f, map_location="cpu", weights_only=True)  # the torch-free writer's file is a torch file
    assert pkg["exported"] and isinstance(pkg["xp.cfg"], str)
    ref = load_compression_model(f)  # strict load_state_dict: every key present, no extra
    assert ref.num_codebooks == ours.total_codebooks and ref.sample_rate == ours.sample_rate
    wav = _signal(ours, 4)
    ref_codes, ref_audio = R.native_encode_decode(ref, wav)
    assert len(np.unique(ref_codes)) > 3
    codes, scale = ours.encode_with_scale(wav)
    np.testing.assert_array_equal(np.asarray(codes), ref_codes)
    assert np.abs(np.asarray(ours.decode(codes, scale)) - ref_audio).max() <= ATOL
    # the EMA buffers travel with the export
    g, p, cb = triple
    np.testing.assert_allclose(ref.quantizer.vq.layers[0]._codebook.cluster_size.numpy(),
                               np.asarray(cb["quantizer"]["cluster_size"][...][0]), rtol=1e-6)
    back = load_encodec(path)
    assert back.config.replace(name="x") == ours.config.replace(name="x")
    np.testing.assert_array_equal(np.asarray(back.encode(wav)), ref_codes)
