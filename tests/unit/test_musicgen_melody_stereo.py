"""Torch-free checks of MusicGen-melody / stereo pieces: the xp.cfg fields the loader reads and refuses by name,
the chroma length / matching / null chroma, the stereo codebook interleaving order, the CLI request check."""
import numpy as np
import pytest

from magnet_jax.codec.stereo import StereoCodec
from magnet_jax.convert import CheckpointError
from magnet_jax.convert.musicgen import channels_from_xp_cfg, config_from_xp_cfg
from magnet_jax.model import chroma as CH
from magnet_jax.model.musicgen_melody import MusicGenMelodyConfig


def _xp(melody=True, text_fuse="prepend", **chroma):
    xp = {"lm_model": "transformer_lm", "solver": "musicgen", "sample_rate": 32000,
          "dataset": {"segment_duration": 30},
          "codebooks_pattern": {"modeling": "delay", "delay": {"delays": [0, 1, 2, 3]}},
          "transformer_lm": {"dim": 64, "num_heads": 4, "num_layers": 2, "n_q": 4, "card": 2048, "causal": True},
          "fuser": {"sum": [], "prepend": [], "cross": ["description"], "input_interpolate": []},
          "conditioners": {"description": {"model": "t5", "t5": {"name": "t5-base"}}}}
    if melody:
        xp["conditioners"]["self_wav"] = {"model": "chroma_stem", "chroma_stem": {
            "sample_rate": "${sample_rate}", "n_chroma": 12, "radix2_exp": 14, "argmax": True, **chroma}}
        xp["fuser"]["prepend"] = ["self_wav", "description"] if text_fuse == "prepend" else ["self_wav"]
        xp["fuser"]["cross"] = [] if text_fuse == "prepend" else ["description"]
    return xp


def test_melody_xp_cfg_fields():
    c = config_from_xp_cfg(_xp())
    assert isinstance(c, MusicGenMelodyConfig)
    assert (c.n_chroma, c.chroma_radix2_exp, c.chroma_argmax, c.chroma_sample_rate, c.text_fuse) == \
        (12, 14, True, 32000, "prepend")
    assert c.chroma_frames == 235                     # the released melody model's chroma_len (30 s)
    assert config_from_xp_cfg(_xp(text_fuse="cross")).text_fuse == "cross"
    assert not isinstance(config_from_xp_cfg(_xp(melody=False)), MusicGenMelodyConfig)


@pytest.mark.parametrize("edit,match", [
    (lambda x: x["conditioners"]["self_wav"]["chroma_stem"].update(winhop=1024), "chroma_stem settings"),
    (lambda x: x["conditioners"]["self_wav"].update(model="clap"), "self_wav conditioner"),
    (lambda x: x["fuser"].update(prepend=["description"], cross=[]), "prepend"),
    (lambda x: x["fuser"].update(sum=["self_wav"]), "fuser sum"),
    (lambda x: x.update(interleave_stereo_codebooks={"use": True, "per_timestep": True}), "per_timestep"),
])
def test_unsupported_variants_refused_by_name(edit, match):
    xp = _xp()
    edit(xp)
    with pytest.raises(CheckpointError, match=match):
        config_from_xp_cfg(xp)


def test_stereo_channels_from_xp_cfg():
    xp = _xp(melody=False)
    assert channels_from_xp_cfg(xp) == 1
    xp["interleave_stereo_codebooks"] = {"use": True, "per_timestep": False}
    assert channels_from_xp_cfg(xp) == 2


def test_match_length_and_null_chroma():
    x = np.arange(2 * 3 * 12, dtype=np.float32).reshape(2, 3, 12)
    out = np.asarray(CH.match_length(x, 7))
    np.testing.assert_array_equal(out, np.concatenate([x, x, x], axis=1)[:, :7])     # tiled, then cut
    np.testing.assert_array_equal(np.asarray(CH.match_length(x, 2)), x[:, :2])
    null = np.asarray(CH.null_chroma(2, 5))
    assert null.shape == (2, 5, 12) and (null[..., 0] == 1).all() and null[..., 1:].sum() == 0
    assert np.asarray(CH.null_chroma(1, 5, argmax=False)).sum() == 0
    assert CH.chroma_length(32000, 30.0, 14) == 235 and CH.chroma_length(32000, 0.01, 14) == 5


class _Mono:
    """A mono 'codec' whose codes are the first sample of each 4-sample frame, per codebook k: value + k."""
    channels, num_codebooks, sample_rate, cardinality = 1, 2, 8, 1000

    def encode(self, wav):
        frames = np.asarray(wav)[:, 0, ::4].astype(np.int32)
        return np.stack([frames + k for k in range(2)], axis=1)

    def decode(self, codes):
        return np.repeat(np.asarray(codes)[:, :1].astype(np.float32), 4, axis=-1)


def test_stereo_interleaving_order():
    codec = StereoCodec(_Mono())
    wav = np.stack([np.full((1, 8), 10.0), np.full((1, 8), 20.0)], axis=1)       # [1, 2, 8]: L = 10, R = 20
    codes = np.asarray(codec.encode(wav))
    assert codec.num_codebooks == 4 and codec.channels == 2 and codec.sample_rate == 8
    np.testing.assert_array_equal(codes[0, :, 0], [10, 20, 11, 21])              # codes[:, 2k + c]
    audio = np.asarray(codec.decode(codes))
    assert audio.shape == (1, 2, 8) and (audio[0, 0] == 10).all() and (audio[0, 1] == 20).all()
    with pytest.raises(ValueError, match="stereo"):
        codec.encode(wav[:, :1])


def test_melody_request_check():
    from magnet_jax.jobs.generate import GenerationRequest, RequestError, check_request
    with pytest.raises(RequestError, match="--melody"):
        check_request(GenerationRequest(model="config:tiny", texts=["a"], melody="m.wav", prompt_wav="p.wav"))
