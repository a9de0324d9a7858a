"""Stereo MusicGen vs audiocraft 1.3.0: :class:`StereoCodec` against ``InterleaveStereoCompressionModel``
wrapping the same random-weight EnCodec (identical interleaved codes, audio within 1e-4), and
``MagnetPipeline.from_pretrained`` of a random-weight ``facebook/musicgen-stereo-small`` layout folder
(8-codebook LM + mono ``compression_state_dict.bin``) end to end: greedy codes equal audiocraft's
``LMModel.generate``, the audio [B, 2, N] equals the reference wrapper's decode, and a stereo prompt is
interleaved on encode for continuation."""
import numpy as np
import pytest
import torch

from magnet_jax.codec.stereo import StereoCodec
from magnet_jax.convert.encodec import load_encodec
from tests.reference import encodec_ref as E
from tests.reference import musicgen_ref as R

TOL = 1e-4
CARD = 64


def _codec_cfg():
    return E.native_cfg(sample_rate=32000, ratios=(8, 5, 4, 4), n_filters=4, dimension=16, lstm=1, n_q=4, bins=CARD)


@pytest.fixture(scope="module")
def codecs(tmp_path_factory):
    from audiocraft.models.encodec import InterleaveStereoCompressionModel
    d = tmp_path_factory.mktemp("codec")
    cfg = _codec_cfg()
    ref = E.native_model(cfg, seed=3)
    E.native_checkpoint(ref, cfg, d / "compression_state_dict.bin")
    return d, InterleaveStereoCompressionModel(ref).eval(), StereoCodec(load_encodec(d / "compression_state_dict.bin"))


def _stereo(n, seed, B=2):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 32000
    left = torch.sin(2 * np.pi * 220 * t) + 0.3 * torch.randn(B, n, generator=g)
    right = torch.sin(2 * np.pi * 330 * t) + 0.3 * torch.randn(B, n, generator=g)
    return (0.3 * torch.stack([left, right], 1)).float().numpy()


def test_stereo_codec_matches_interleave_wrapper(codecs):
    _, ref, ours = codecs
    wav = _stereo(6400, 0)
    with torch.no_grad():
        want_codes, _ = ref.encode(torch.from_numpy(wav))
        want_audio = ref.decode(want_codes).numpy()
    got_codes = np.asarray(ours.encode(wav))
    assert ours.num_codebooks == ref.num_codebooks == 8 and ours.channels == 2
    np.testing.assert_array_equal(got_codes, want_codes.numpy())
    left, right = ref.get_left_right_codes(want_codes)
    l2, r2 = ours.left_right(got_codes)
    np.testing.assert_array_equal(np.asarray(l2), left.numpy())
    np.testing.assert_array_equal(np.asarray(r2), right.numpy())
    got_audio = np.asarray(ours.decode(got_codes))
    assert got_audio.shape == want_audio.shape == (2, 2, 6400)
    assert np.abs(got_audio - want_audio).max() <= TOL


def test_from_pretrained_stereo_layout_end_to_end(codecs, tmp_path, monkeypatch):
    import magnet_jax.convert.t5 as t5_mod
    from magnet_jax.pipelines.magnet import MagnetPipeline
    from magnet_jax.pipelines.musicgen import MusicGenPipeline
    codec_dir, ref_codec, _ = codecs
    folder = tmp_path / "musicgen-stereo-small"
    xp = R.musicgen_xp_cfg(dim=32, num_heads=2, num_layers=2, n_q=8, card=CARD, delays=[0, 0, 1, 1, 2, 2, 3, 3],
                           stereo=True, segment_duration=1)
    R.make_checkpoint(folder, xp, seed=8)
    (folder / "compression_state_dict.bin").write_bytes((codec_dir / "compression_state_dict.bin").read_bytes())
    real_stack = t5_mod.load_text_stack
    monkeypatch.setattr(t5_mod, "load_text_stack", lambda name, dim, **kw: real_stack("tiny", dim))
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    pipe = MagnetPipeline.from_pretrained(str(folder))
    assert isinstance(pipe, MusicGenPipeline) and isinstance(pipe.codec, StereoCodec)
    assert pipe.codec.channels == 2 and pipe.lm.config.n_q == 8
    texts = ["a b c", "d"]
    codes = np.asarray(pipe.generate_codes(texts, duration=0.24, use_sampling=False))
    hidden, mask = pipe.encode_text(texts)
    ref_lm = R.load_reference(folder)
    want = R.reference_generate(ref_lm, torch.from_numpy(np.array(hidden)), torch.from_numpy(np.array(mask)),
                                num_frames=12)
    np.testing.assert_array_equal(codes, want)
    wav = pipe.generate(texts, duration=0.24, use_sampling=False)
    with torch.no_grad():
        want_wav = ref_codec.decode(torch.from_numpy(want)).numpy()[..., :wav.shape[-1]]
    assert wav.shape == (2, 2, int(0.24 * 32000))
    assert np.abs(wav - want_wav).max() <= TOL
    # continuation: the stereo prompt is interleaved on encode (the reference wrapper's codes)
    prompt = _stereo(3200, 5, B=1)[0]
    with torch.no_grad():
        want_prompt = ref_codec.encode(torch.from_numpy(prompt)[None])[0].numpy()
    np.testing.assert_array_equal(np.asarray(pipe.encode_audio(prompt, 32000)), want_prompt)
    cont = np.asarray(pipe.generate_codes(texts[:1], duration=0.24, prompt=want_prompt, use_sampling=False))
    want_cont = R.reference_generate(ref_lm, torch.from_numpy(np.array(hidden[:1])),
                                     torch.from_numpy(np.array(mask[:1])), num_frames=12, prompt=want_prompt)
    np.testing.assert_array_equal(cont, want_cont)
    again = MagnetPipeline.from_pretrained(str(folder))         # from the safetensors cache: still stereo
    assert isinstance(again.codec, StereoCodec)
