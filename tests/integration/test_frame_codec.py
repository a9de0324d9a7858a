"""The frame codec (magnet_jax/codec/frame_codec.py): its STFT pair, the training forward, export / load through
``load_encodec`` with identical codes (learning: tests/e2e/test_frame_codec_learns.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.codec.frame_codec import (
    FrameCodec,
    FrameCodecConfig,
    FrameCodecNet,
    griffin_lim,
    is_frame_codec_dir,
)
from magnet_jax.codec.stft import analysis, frame, overlap_add, synthesis
from magnet_jax.codec.training_model import (
    CodebookState,
    RVQTrainConfig,
    codec_train_forward,
    export_inference_codec,
    init_trainable_codec,
)
from magnet_jax.convert.encodec import load_encodec

SMALL = FrameCodecConfig(sample_rate=8000, hop_length=160, n_fft=640, width=32, depth=2, dimension=16,
                         total_codebooks=3, num_codebooks=3, bins=32, name="small")


def test_stft_pair_is_exact_and_overlap_add_is_the_transpose_of_framing():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 3, 4000)), jnp.float32)
    spec = analysis(x, 640, 160)
    assert spec.shape == (2, 3, 25, 321)
    np.testing.assert_allclose(np.asarray(synthesis(spec, 640, 160)), np.asarray(x), atol=2e-5)
    # <frame(x), f> == <x, overlap_add(f)>: one is the other's adjoint
    f = jnp.asarray(rng.standard_normal((3, 22, 640)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((3, 21 * 160 + 640)), jnp.float32)
    lhs = jnp.sum(frame(y, 640, 160) * f)
    rhs = jnp.sum(y * overlap_add(f, 160))
    np.testing.assert_allclose(float(lhs), float(rhs), rtol=1e-4)


def _chord(sr=8000, seconds=1.0):
    t = np.arange(int(sr * seconds)) / sr
    return sum(np.sin(2 * np.pi * f * t + i) / (i + 1) for i, f in enumerate((220.0, 277.2, 329.6, 440.0)))


def test_griffin_lim_recovers_a_consistent_phase():
    """From magnitudes alone, fast Griffin-Lim rebuilds audio whose STFT magnitude matches (spectral convergence
    well under that of the random starting phases) and whose partials sit where the original's do."""
    x = jnp.asarray(_chord()[None], jnp.float32)
    mag = jnp.abs(analysis(x, 640, 160))
    start = griffin_lim(mag, 640, 160, iters=0)
    y = griffin_lim(mag, 640, 160, iters=32)

    def sc(a):
        m = jnp.abs(analysis(a, 640, 160))
        return float(jnp.linalg.norm(m - mag) / jnp.linalg.norm(mag))
    assert sc(y) < 0.15 < sc(start)
    spec = np.abs(np.fft.rfft(np.asarray(y[0]) * np.hanning(y.shape[-1])))   # 1 Hz bins
    for f in (220.0, 277.2, 329.6, 440.0):   # each partial is a line far above the floor between them
        assert spec[int(f) - 2:int(f) + 3].max() > 30 * np.median(spec[150:500]), f
    np.testing.assert_array_equal(np.asarray(y), np.asarray(griffin_lim(mag, 640, 160, iters=32)))  # deterministic


def test_griffin_lim_decoder_trains_on_the_input_phase():
    """phase="griffin_lim": in training the decoder's magnitude rides on the input's phase, so a decoder whose
    magnitude is exact reproduces the input; decoding without the input uses Griffin-Lim."""
    from magnet_jax.codec.frame_codec import FrameDecoder
    cfg = SMALL.replace(phase="griffin_lim", gl_iters=4)
    dec = FrameDecoder(cfg, nnx.Rngs(0))
    x = jnp.asarray(_chord()[None, :, None], jnp.float32)                      # [1, N, 1]
    target = jnp.log(jnp.abs(analysis(x[..., 0], 640, 160)))                     # [1, T, F]

    class Exact(nnx.Module):   # a trunk that outputs the input's own log magnitude
        def __call__(self, z):
            return jnp.stack([target, jnp.zeros_like(target)], axis=-2).reshape(1, target.shape[1], -1)
    dec.trunk = Exact()
    z = jnp.zeros((1, target.shape[1], cfg.dimension))
    np.testing.assert_allclose(np.asarray(dec(z, reference=x)), np.asarray(x), atol=1e-4)
    assert dec(z).shape == x.shape and not np.allclose(np.asarray(dec(z)), np.asarray(x), atol=1e-2)


def test_config_rejects_bad_shapes_and_unknown_fields():
    with pytest.raises(ValueError, match="multiple of hop_length"):
        FrameCodecConfig(hop_length=320, n_fft=1000)
    with pytest.raises(ValueError, match="phase must be"):
        FrameCodecConfig(phase="random")
    with pytest.raises(ValueError, match="unknown fields"):
        FrameCodecConfig.from_json({**SMALL.to_json(), "surprise": 1})
    assert FrameCodecConfig.from_json(SMALL.to_json()) == SMALL


def _trained_triple(seed=0):
    model = init_trainable_codec(SMALL, jax.random.PRNGKey(seed), rvq=RVQTrainConfig(kmeans_iters=3))
    graphdef, params, cb = nnx.split(model, nnx.Param, CodebookState)
    wav = jax.random.normal(jax.random.PRNGKey(1), (2, 1, 8000)) * 0.1
    _, aux = codec_train_forward(graphdef, params, cb, wav, jax.random.PRNGKey(2), train=True,
                                 quantizer_dropout=False)   # k-means init of the codebooks
    return graphdef, params, aux["codebook_state"], wav


def test_training_forward_sends_gradients_to_both_sides():
    graphdef, params, cb, wav = _trained_triple()

    def loss(p):
        recon, aux = codec_train_forward(graphdef, p, cb, wav, jax.random.PRNGKey(3), train=True,
                                         quantizer_dropout=False)
        return jnp.mean(jnp.square(recon - wav)) + aux["commit_loss"]
    grads = nnx.to_pure_dict(jax.grad(loss)(params))
    for side in ("encoder", "decoder"):
        norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads[side]))))
        assert np.isfinite(norm) and norm > 0, side


def test_export_and_load_encodec_give_identical_codes_and_audio(tmp_path):
    from magnet_jax.convert.encodec_export import export_codec
    graphdef, params, cb, wav = _trained_triple()
    inference = export_inference_codec(graphdef, params, cb)
    assert isinstance(inference, FrameCodec)
    out = export_codec((graphdef, params, cb), tmp_path / "codec", "auto")
    assert is_frame_codec_dir(out)
    loaded = load_encodec(out)
    codes = inference.encode(wav)
    assert codes.shape == (2, 3, 50) and int(codes.max()) < SMALL.bins
    np.testing.assert_array_equal(np.asarray(loaded.encode(wav)), np.asarray(codes))
    np.testing.assert_allclose(np.asarray(loaded.decode(codes)), np.asarray(inference.decode(codes)), atol=1e-6)
    assert loaded.decode(codes).shape == (2, 1, 8000)
    assert load_encodec(out, num_codebooks=2).encode(wav).shape == (2, 2, 50)
    with pytest.raises(ValueError, match="no transformers layout"):
        export_codec((graphdef, params, cb), tmp_path / "hf", "transformers")


def test_load_refuses_weights_that_do_not_match_the_config(tmp_path):
    from magnet_jax.codec.frame_codec import save_frame_codec
    from magnet_jax.convert.encodec import CodecFormatError
    save_frame_codec(FrameCodec(SMALL, FrameCodecNet(SMALL)), tmp_path)
    (tmp_path / "config.json").write_text((tmp_path / "config.json").read_text().replace('"width": 32', '"width": 64'))
    with pytest.raises(CodecFormatError, match="shape"):
        load_encodec(tmp_path)
