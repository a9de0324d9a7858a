"""magnet_jax.codec vs the PyTorch references, every weight random (see tests/reference/encodec_ref.py).

Bar: identical codes, decoded audio max |diff| <= 1e-4 (fp32), on tones / noise bursts / silence,
at lengths that are not multiples of the hop, mono and stereo, several architectures, and the three
checkpoint layouts (transformers, audiocraft-native, encodec package).
"""
# ruff: noqa: I001  (the reference shim must be imported before audiocraft / encodec)
import json

import numpy as np
import pytest

import tests.reference.shim  # noqa: F401  (before audiocraft / encodec)
import torch

from magnet_jax.codec import Encodec
from magnet_jax.convert.encodec import CodecFormatError, load_encodec
from magnet_jax.hub import HubError
from tests.reference import encodec_ref as R

ATOL = 1e-4
SIGNALS = ("tone", "burst", "silence")

# Small transformers architectures: (name, EncodecConfig kwargs, lengths, batch)
HF_ARCHS = {
    "noncausal_reflect_mono": (dict(upsampling_ratios=[4, 3, 2], num_filters=8, hidden_size=16, codebook_size=64,
                                    target_bandwidths=[3.6, 7.2], sampling_rate=9600, use_causal_conv=False,
                                    pad_mode="reflect", use_conv_shortcut=False, num_lstm_layers=2),
                               (1001, 37)),
    "causal_shortcut_stereo": (dict(upsampling_ratios=[5, 2], num_filters=4, hidden_size=8, codebook_size=32,
                                    target_bandwidths=[5.0], sampling_rate=4000, use_causal_conv=True,
                                    pad_mode="reflect", use_conv_shortcut=True, num_lstm_layers=1,
                                    audio_channels=2, num_residual_layers=2, kernel_size=5, last_kernel_size=3,
                                    residual_kernel_size=5, compress=4),
                               (777, 9)),
    "groupnorm_constant_normalize": (dict(upsampling_ratios=[2, 2, 2, 2], num_filters=8, hidden_size=32,
                                          codebook_size=256, target_bandwidths=[16.0], sampling_rate=8000,
                                          use_causal_conv=False, pad_mode="constant", norm_type="time_group_norm",
                                          normalize=True, use_conv_shortcut=False, num_lstm_layers=3),
                                     (501,)),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("codec")


_CACHE = {}


def hf_pair(name, workdir):
    """(reference model, our codec loaded from the saved transformers folder, max bandwidth)."""
    if name not in _CACHE:
        kw, _ = HF_ARCHS[name]
        ref = R.hf_model(seed=len(_CACHE), **kw)
        path = workdir / f"hf_{name}"
        ref.save_pretrained(path)
        _CACHE[name] = (ref, load_encodec(path), kw["target_bandwidths"][-1])
    return _CACHE[name]


def _check(ref_codes, ref_audio, codes, audio):
    codes, audio = np.asarray(codes), np.asarray(audio)
    assert codes.dtype == np.int32
    assert codes.shape == ref_codes.shape
    np.testing.assert_array_equal(codes, ref_codes)
    assert audio.shape == ref_audio.shape
    err = np.abs(audio - ref_audio).max()
    assert err <= ATOL, err


@pytest.mark.parametrize("name", list(HF_ARCHS))
def test_hf_parity(name, workdir):
    ref, codec, bw = hf_pair(name, workdir)
    kw, lengths = HF_ARCHS[name]
    hop = int(np.prod(kw["upsampling_ratios"]))
    assert codec.channels == kw.get("audio_channels", 1) and codec.sample_rate == kw["sampling_rate"]
    assert codec.num_codebooks == ref.config.num_quantizers and codec.cardinality == kw["codebook_size"]
    for length in lengths:
        assert length % hop
        for i, kind in enumerate(SIGNALS):
            wav = R.test_signal(kind, 2, codec.channels, length, codec.sample_rate, seed=i)
            ref_codes, ref_audio = R.hf_encode_decode(ref, wav, bw)
            if kind != "silence" and length > 20 * hop:
                assert len(np.unique(ref_codes)) > 4  # the codebooks really are random
            codes, scale = codec.encode_with_scale(wav)
            _check(ref_codes, ref_audio, codes, codec.decode(codes, scale))
            assert codes.shape[-1] == -(-length // hop)


def test_hf_fewer_codebooks(workdir):
    ref, codec, _ = hf_pair("noncausal_reflect_mono", workdir)
    wav = R.test_signal("tone", 2, 1, 1001, 9600)
    ref_codes, ref_audio = R.hf_encode_decode(ref, wav, 3.6)
    small = load_encodec(workdir / "hf_noncausal_reflect_mono", bandwidth=3.6)
    assert small.num_codebooks == ref_codes.shape[1] == codec.with_num_codebooks(small.num_codebooks).num_codebooks
    codes = small.encode(wav)
    _check(ref_codes, ref_audio, codes, small.decode(codes))


def test_hf_legacy_weight_norm_and_bin(workdir):
    """Hub files use weight_g / weight_v; also read pytorch_model.bin instead of safetensors."""
    ref, codec, bw = hf_pair("noncausal_reflect_mono", workdir)
    sd = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                             "weight_v"): v.clone()
          for k, v in ref.state_dict().items()}
    assert any(k.endswith("weight_g") for k in sd)
    for fmt in ("safetensors", "bin"):
        d = workdir / f"legacy_{fmt}"
        d.mkdir()
        ref.config.to_json_file(str(d / "config.json"))
        if fmt == "bin":
            torch.save(sd, d / "pytorch_model.bin")
        else:
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "model.safetensors"))
        other = load_encodec(d / "model.safetensors" if fmt == "safetensors" else d)
        wav = R.test_signal("burst", 2, 1, 1001, 9600, seed=3)
        ref_codes, ref_audio = R.hf_encode_decode(ref, wav, bw)
        codes = other.encode(wav)
        _check(ref_codes, ref_audio, codes, other.decode(codes))


def test_hf_32khz_architecture(workdir):
    """The real facebook/encodec_32khz architecture (57.6M params, reflect padding), short clip."""
    kw = R.hf_32khz_kwargs()
    ref = R.hf_model(seed=7, **kw)
    path = workdir / "hf32k"
    ref.save_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["pad_mode"] == "reflect"
    codec = load_encodec(path)
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.cardinality, codec.channels) == \
        (32000, 50.0, 4, 2048, 1)
    wav = np.concatenate([R.test_signal("mix", 1, 1, 9000, 32000, seed=1),
                          R.test_signal("silence", 1, 1, 9000, 32000)], axis=-1)  # 18000: not a hop multiple
    ref_codes, ref_audio = R.hf_encode_decode(ref, wav, 2.2)
    assert len(np.unique(ref_codes)) > 20
    codes = codec.encode(wav)
    _check(ref_codes, ref_audio, codes, codec.decode(codes))


# ------------------------------------------------------------------------------------ audiocraft native
NATIVE_ARCHS = {
    # 16 kHz-tokenizer-like layout, smaller: constant padding, weight norm, first block without norm
    "wn_constant_mono": dict(sample_rate=8000, ratios=(4, 2, 2), n_filters=8, dimension=16, n_q=3, bins=64,
                             pad_mode="constant", disable_norm_outer_blocks=1),
    # stereo, renormalize, time group norm (outer blocks disabled), no LSTM, conv shortcuts, 2 res layers
    "gn_stereo_renorm_nolstm": dict(sample_rate=6000, channels=2, ratios=(3, 2), n_filters=4, dimension=8, n_q=2,
                                    bins=32, pad_mode="reflect", norm="time_group_norm", renormalize=True, lstm=0,
                                    n_residual_layers=2, true_skip=False, disable_norm_outer_blocks=1),
}


@pytest.mark.parametrize("name", list(NATIVE_ARCHS))
def test_native_parity(name, workdir):
    cfg = R.native_cfg(**NATIVE_ARCHS[name])
    ref = R.native_model(cfg, seed=11)
    d = workdir / f"native_{name}"
    d.mkdir()
    R.native_checkpoint(ref, cfg, d / "compression_state_dict.bin")
    codec = load_encodec(d)  # folder
    assert codec.num_codebooks == ref.num_codebooks and codec.frame_rate == ref.frame_rate
    hop = codec.hop_length
    for i, kind in enumerate(SIGNALS):
        wav = R.test_signal(kind, 2, codec.channels, 7 * hop + 5, codec.sample_rate, seed=i)
        ref_codes, ref_audio = R.native_encode_decode(ref, wav)
        codes, scale = codec.encode_with_scale(wav)
        _check(ref_codes, ref_audio, codes, codec.decode(codes, scale))
    # the file itself, and a {'pretrained': ...} export that redirects to a transformers folder
    assert load_encodec(d / "compression_state_dict.bin").config == codec.config


def test_native_pretrained_redirect(workdir):
    ref, codec, bw = hf_pair("noncausal_reflect_mono", workdir)
    d = workdir / "redirect"
    d.mkdir()
    torch.save({"pretrained": str(workdir / "hf_noncausal_reflect_mono"), "exported": True, "version": "x"},
               d / "compression_state_dict.bin")
    other = load_encodec(d)
    wav = R.test_signal("tone", 1, 1, 1001, 9600)
    np.testing.assert_array_equal(np.asarray(other.encode(wav)), np.asarray(codec.encode(wav)))


# ------------------------------------------------------------------------------------ encodec package
def test_encodec_pkg_24khz_layout(workdir):
    """The package's causal 24 kHz model class (weight norm, conv shortcuts), smaller widths."""
    ref = R.pkg_model("24khz", seed=5, n_filters=8, ratios=[4, 2, 2], dimension=16, n_q=4, bins=64)
    path = workdir / "encodec_24khz-test.th"
    torch.save(ref.state_dict(), path)
    codec = load_encodec(path)
    assert codec.config.encoder.causal and codec.sample_rate == 24000 and not codec.config.encoder.true_skip
    for i, kind in enumerate(SIGNALS):
        wav = R.test_signal(kind, 2, 1, 1001, 24000, seed=i)
        with torch.no_grad():
            frames = ref.encode(torch.from_numpy(wav))
            ref_audio = ref.decode(frames).numpy()
        codes = codec.encode(wav)
        _check(frames[0][0].numpy(), ref_audio, codes, codec.decode(codes))


def test_encodec_pkg_48khz_segments(workdir):
    """The package's 48 kHz model class: stereo, time group norm, per-segment normalisation, 1 s segments
    with 1 % overlap and linear overlap-add."""
    ref = R.pkg_model("48khz", seed=6, n_filters=4, ratios=[4, 4, 2], dimension=16, n_q=4, bins=64)
    path = workdir / "encodec_48khz-test.th"
    torch.save(ref.state_dict(), path)
    codec = load_encodec(path)
    assert codec.channels == 2 and codec.config.renormalize and codec.segment_stride == 47520
    wav = R.test_signal("mix", 2, 2, 52001, 48000, seed=2)
    with torch.no_grad():
        frames = ref.encode(torch.from_numpy(wav))
        ref_audio = ref.decode(frames).numpy()
    ours = codec.encode_segments(wav)
    assert len(ours) == len(frames) == 2
    for (rc, rs), (c, s) in zip(frames, ours):
        np.testing.assert_array_equal(np.asarray(c), rc.numpy())
        np.testing.assert_allclose(np.asarray(s), rs.numpy().ravel(), rtol=1e-5)
    audio = np.asarray(codec.decode_segments(ours))
    assert audio.shape == ref_audio.shape
    assert np.abs(audio - ref_audio).max() <= ATOL


# ------------------------------------------------------------------------------------ chunked long audio
@pytest.mark.parametrize("name", ["noncausal_reflect_mono", "causal_shortcut_stereo"])
def test_chunked_equals_whole_clip(name, workdir):
    """The documented policy: chunked codes == whole-clip codes, chunked decode == whole decode."""
    _, codec, _ = hf_pair(name, workdir)
    fr = codec.frame_rate
    for length in (40 * codec.hop_length + 7,):
        wav = R.test_signal("mix", 2, codec.channels, length, codec.sample_rate, seed=length)
        whole = np.asarray(codec.encode(wav, chunk_seconds=None))
        audio = np.asarray(codec.decode(whole, chunk_seconds=None))
        for frames in (5, 11):  # chunks of 5 / 11 frames: many chunks and a ragged last one
            np.testing.assert_array_equal(np.asarray(codec.encode(wav, chunk_seconds=frames / fr)), whole)
            chunked = np.asarray(codec.decode(whole, chunk_seconds=frames / fr))
            assert chunked.shape == audio.shape
            assert np.abs(chunked - audio).max() <= 1e-5


def test_chunk_margin_is_needed(workdir, monkeypatch):
    """Negative control: with too little context the chunk seams do change the result."""
    _, codec, _ = hf_pair("noncausal_reflect_mono", workdir)
    wav = R.test_signal("mix", 2, 1, 40 * codec.hop_length + 7, codec.sample_rate, seed=1)
    whole = np.asarray(codec.encode(wav, chunk_seconds=None))
    monkeypatch.setattr(Encodec, "encoder_margin", property(lambda self: 0))
    monkeypatch.setattr(Encodec, "decoder_margin", property(lambda self: 0))
    cs = 5 / codec.frame_rate
    assert not np.array_equal(np.asarray(codec.encode(wav, chunk_seconds=cs)), whole)
    audio = np.asarray(codec.decode(whole, chunk_seconds=None))
    assert np.abs(np.asarray(codec.decode(whole, chunk_seconds=cs)) - audio).max() > 1e-3


# ------------------------------------------------------------------------------------ errors
def test_loader_errors(tmp_path):
    with pytest.raises(HubError, match="not reachable|local folder"):
        load_encodec("facebook/encodec_32khz_does_not_exist")  # HF_HUB_OFFLINE=1 (conftest)
    with pytest.raises(HubError):
        load_encodec("not a path and not a repo id")
    bogus = tmp_path / "weights.th"
    torch.save({"foo": torch.zeros(2)}, bogus)
    with pytest.raises(CodecFormatError, match="not an EnCodec checkpoint"):
        load_encodec(bogus)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CodecFormatError, match="unknown checkpoint file type"):
        load_encodec(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CodecFormatError, match="no EnCodec checkpoint found"):
        load_encodec(empty)


def test_input_validation(workdir):
    _, codec, _ = hf_pair("noncausal_reflect_mono", workdir)
    with pytest.raises(ValueError, match=r"\[B, C, N\]"):
        codec.encode(np.zeros((100,), np.float32))
    with pytest.raises(ValueError, match="1-channel"):
        codec.encode(np.zeros((1, 2, 100), np.float32))
    with pytest.raises(ValueError, match="codebooks"):
        codec.decode(np.zeros((1, 9, 10), np.int32))
