"""Rescoring / hybrid from two released-layout checkpoints (random weights): the rescorer's probabilities against
audiocraft's own ``LMModel.compute_predictions`` (CFG-mixed), and ``from_pretrained(..., rescorer=folder)``
end to end (codec / T5 checks, w = 1 bitwise plain, rescored and hybrid generation)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from magnet_jax.decoding.musicgen import generate as musicgen_generate
from magnet_jax.decoding.rescoring import rescorer_probs_fn
from magnet_jax.pipelines.companion import prefix_rng
from magnet_jax.pipelines.magnet import MagnetPipeline
from tests.reference import companion_ref as CR
from tests.reference import musicgen_ref as G

STEPS = (3, 1, 1, 1)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return CR.released_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="module")
def pipe(released, tmp_path_factory):
    magnet, musicgen, t5, _, _ = released
    mp = pytest.MonkeyPatch()
    mp.setenv("MAGNET_JAX_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield MagnetPipeline.from_pretrained(str(magnet), t5=str(t5), rescorer=str(musicgen))
    mp.undo()


def test_rescorer_probs_match_audiocraft_compute_predictions(pipe, released):
    ref = released[4]
    B, T, S, coef = 2, 12, 5, 3.0
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(B, S, 768, generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 3:] = 0
    codes = torch.randint(0, 2048, (B, 4, T), generator=g)
    codes[:, 3] = 2048                                         # a codebook MAGNeT has not decoded yet (mask id)
    cond, valid = G.reference_predictions(ref, codes, hidden, mask)
    null, _ = G.reference_predictions(ref, codes, 0 * hidden, 0 * mask)
    want = torch.softmax(null + (cond - null) * coef, dim=-1)
    graphdef, state = nnx.split(pipe.rescorer.lm)
    fn = rescorer_probs_fn(graphdef, state, jnp.asarray(hidden.numpy()), jnp.asarray(mask.numpy()), coef)
    for stage in range(3):
        p_ref = torch.gather(want[:, stage], -1, codes[:, stage, :, None])[..., 0].numpy()
        ok = valid[0, stage].numpy()                           # audiocraft predicts t + delay < T only
        got = np.asarray(fn(jnp.asarray(codes.numpy(), jnp.int32), stage))
        np.testing.assert_allclose(got[:, ok], p_ref[:, ok], rtol=1e-4, atol=1e-7)


def test_from_pretrained_with_rescorer_end_to_end(pipe):
    assert pipe.rescorer is not None and pipe.rescorer.lm.config.delays == (0, 1, 2, 3)
    kw = dict(duration=0.6, seed=1, decoding_steps=STEPS)
    plain = np.asarray(pipe.generate_codes(["calm piano"], **kw))
    one = np.asarray(pipe.generate_codes(["calm piano"], rescorer_weight=1.0, **kw))
    np.testing.assert_array_equal(one, plain)                 # w = 1: plain MAGNeT, bit for bit
    rescored = np.asarray(pipe.generate_codes(["calm piano"], rescorer_weight=0.0, **kw))
    assert rescored.shape == plain.shape and (rescored != plain).any()
    wav = pipe.generate(["calm piano"], rescorer_weight=0.7, **kw)
    assert wav.shape == (1, 1, 4800) and np.isfinite(wav).all()


def test_hybrid_from_two_released_models(pipe):
    P, D = 0.2, 0.6                                # D as above: MAGNeT's compiled program is reused
    codes = np.asarray(pipe.generate_codes(["drums"], duration=D, seed=5, hybrid_prefix_seconds=P,
                                           decoding_steps=STEPS))
    n = int(round(P * pipe.frame_rate))
    hidden, mask = pipe.encode_text(["drums"])
    prefix = musicgen_generate(pipe.rescorer.lm, hidden, mask, config=pipe.rescorer.generation, rng=prefix_rng(5),
                               num_frames=n)
    np.testing.assert_array_equal(codes[..., :n], np.asarray(prefix))
    rest = pipe.generate_codes(["drums"], duration=D, seed=5, prompt=prefix, decoding_steps=STEPS)
    np.testing.assert_array_equal(codes, np.asarray(rest))
    assert codes.shape == (1, 4, 30)
    with pytest.raises(ValueError, match="shorter than the output"):
        pipe.generate_codes(["x"], duration=0.5, hybrid_prefix_seconds=1.0)


def test_mismatched_rescorer_is_one_line_error(released, tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    magnet, musicgen, t5, _, _ = released
    G.make_checkpoint(tmp_path / "mg1024", G.musicgen_xp_cfg(dim=32, num_heads=2, num_layers=1, card=1024), seed=0)
    CR._codec_pointer(tmp_path / "mg1024", magnet.parent / "encodec")
    with pytest.raises(ValueError, match=r"rescorer's card is 1024, MAGNeT's 2048") as e:
        MagnetPipeline.from_pretrained(str(magnet), t5=str(t5), rescorer=str(tmp_path / "mg1024"))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="is a transformer_lm_magnet checkpoint"):
        MagnetPipeline.from_pretrained(str(magnet), t5=str(t5), rescorer=str(magnet))
    with pytest.raises(ValueError, match="applies to MAGNeT models"):
        MagnetPipeline.from_pretrained(str(musicgen), t5=str(t5), rescorer=str(musicgen))
    jax.clear_caches()
