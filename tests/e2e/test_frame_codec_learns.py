"""The frame codec learns: the real trainer (tools/train_codec.py's loop) on synthetic harmonic music improves
held-out reconstruction (not only the training loss). In e2e: the trainer's metrics writer loads TensorBoard."""
import importlib.util
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _harmonic_music(rng, seconds, sr=8000):
    """Note sequences of additive-synthesis instruments (random partial weights, decay, vibrato-free)."""
    out = np.zeros(int(seconds * sr), np.float32)
    t = 0
    while t < out.size:
        dur = int(sr * rng.choice([0.125, 0.25, 0.5]))
        f0 = 110 * 2 ** (rng.integers(0, 30) / 12)
        n = np.arange(min(dur, out.size - t)) / sr
        amps = rng.random(6) / np.arange(1, 7)
        note = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * n) for k, a in enumerate(amps) if f0 * (k + 1) < sr / 2)
        out[t:t + n.size] = 0.3 * note * np.exp(-n * rng.uniform(2, 8))
        t += dur
    return out


def test_frame_codec_learns_held_out_reconstruction(tmp_path):
    """A few dozen steps of the real trainer (configs/codec.py:bundled at a small width) on synthetic harmonic
    music: the held-out multi-resolution STFT distance falls well below its value at step 0."""
    import soundfile as sf

    from magnet_jax.codec_training.loop import train
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("valid", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            sf.write(str(tmp_path / split / f"{i}.wav"), _harmonic_music(rng, 4.0), 8000)
    spec = importlib.util.spec_from_file_location("codec_configs", os.path.join(ROOT, "configs", "codec.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config("bundled")
    cfg.model.update(dict(sample_rate=8000, ratios=(5, 4, 4, 2), dimension=16, n_q=2, bins=32))
    cfg.model.frame.update(dict(n_fft=640, width=64, depth=2))
    cfg.rvq.kmeans_iters = 5
    cfg.update(dict(audio_dir=str(tmp_path / "train"), eval_audio_dir=str(tmp_path / "valid"), batch_size=8,
                    segment_seconds=0.5, total_steps=60, log_every=20, eval_every=60, eval_batches=1,
                    checkpoint_every=60))
    cfg.optim.lr = 2e-3
    last = train(cfg, tmp_path / "work")
    rows = [json.loads(line) for line in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in rows if r["step"] == 0 and "eval_mrstft" in r)
    assert last["eval_mrstft"] < 0.75 * first["eval_mrstft"], (first["eval_mrstft"], last["eval_mrstft"])
    assert last["eval_mel"] < first["eval_mel"]


def _small_config(tmp_path, steps):
    spec = importlib.util.spec_from_file_location("codec_configs", os.path.join(ROOT, "configs", "codec.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config("bundled")
    cfg.model.update(dict(sample_rate=8000, ratios=(5, 4, 4, 2), dimension=16, n_q=2, bins=32))
    cfg.model.frame.update(dict(n_fft=640, width=32, depth=1, gl_iters=4))
    cfg.rvq.kmeans_iters = 3
    cfg.update(dict(audio_dir=str(tmp_path / "train"), eval_audio_dir=str(tmp_path / "valid"), batch_size=8,
                    segment_seconds=0.5, total_steps=steps, log_every=steps, eval_every=steps, eval_batches=1,
                    checkpoint_every=steps))
    return cfg


def test_decoder_only_fine_tuning_keeps_every_code(tmp_path):
    """``init_from`` an exported frame codec + ``train_only="decoder"`` (both phase modes): the decoder moves, the
    encoder and codebooks stay bit-identical, so every clip encodes to the same codes (an LM trained on them stays
    valid); an init_from that is not a frame codec export is one clear error."""
    import jax
    import pytest
    import soundfile as sf

    from magnet_jax.codec.frame_codec import FrameCodec, FrameCodecNet, save_frame_codec
    from magnet_jax.codec.training_model import export_inference_codec
    from magnet_jax.codec_training.export import load_trained
    from magnet_jax.codec_training.loop import codec_config, train
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("valid", 1)):
        (tmp_path / split).mkdir()
        for i in range(n):
            sf.write(str(tmp_path / split / f"{i}.wav"), _harmonic_music(rng, 2.0), 8000)
    # the "shipped" codec: a random frame codec of the config's shape with random (non-degenerate) codebooks
    ccfg = codec_config(_small_config(tmp_path, 1))
    net = FrameCodecNet(ccfg)
    net.quantizer.embed[...] = 0.1 * jax.random.normal(jax.random.PRNGKey(3), net.quantizer.embed[...].shape)
    base = FrameCodec(ccfg, net)
    save_frame_codec(base, tmp_path / "base_export")
    clip = _harmonic_music(rng, 2.0)[None, None]
    for phase in ("input", "griffin_lim"):
        cfg = _small_config(tmp_path, 2)
        cfg.update(dict(init_from=str(tmp_path / "base_export"), train_only="decoder", train_phase=phase))
        cfg.optim.lr = 1e-2
        last = train(cfg, tmp_path / f"dec_{phase}")
        assert np.isfinite(last["g_loss"])
        tuned = export_inference_codec(*load_trained(cfg, tmp_path / f"dec_{phase}"))
        codes = np.asarray(base.encode(clip))
        assert len(np.unique(codes)) >= 4                    # codes that could change, if anything moved
        np.testing.assert_array_equal(np.asarray(tuned.encode(clip)), codes)
        a, b = tuned.net.decoder.trunk, base.net.decoder.trunk
        moved = [float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                 for x, y in zip(jax_leaves(a), jax_leaves(b))]
        assert max(moved) > 1e-4, phase
        np.testing.assert_array_equal(np.asarray(tuned.net.quantizer.embed[...]),
                                      np.asarray(base.net.quantizer.embed[...]))
    bad = _small_config(tmp_path, 1)
    bad.update(dict(init_from=str(tmp_path / "train"), train_only="decoder"))
    with pytest.raises(ValueError, match="not an exported frame codec folder"):
        train(bad, tmp_path / "bad")


def jax_leaves(module):
    import jax
    from flax import nnx
    return jax.tree.leaves(nnx.state(module, nnx.Param))
