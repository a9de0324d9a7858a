"""MusicGenLM vs audiocraft 1.3.0 ``LMModel`` (``transformer_lm``): same random weights (every tensor
perturbed, released ``state_dict.bin`` layout, audiocraft's own builder and loader) -> same logits on the
delayed sequence, same per-frame predictions, identical greedy ``generate`` codes (with and without prompt)."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from magnet_jax.convert import load_audiocraft_checkpoint
from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.decoding.musicgen import generate
from magnet_jax.model import MusicGenLM
from magnet_jax.model import delay_pattern as pattern
from tests.reference import magnet_ref as M
from tests.reference import musicgen_ref as R

TOL = 1e-4

ARCHS = {
    # name: (xp_cfg kwargs, [(B, S_seq, S_text)])
    "released_like": (dict(dim=64, num_heads=4, num_layers=2, card=128), [(2, 23, 7), (1, 40, 3)]),
    "deeper_t5_large_delays": (dict(dim=48, num_heads=3, num_layers=3, card=64, delays=[0, 2, 3, 5],
                                    t5_name="t5-large"), [(3, 17, 9)]),
    "stereo_8_codebooks": (dict(dim=32, num_heads=2, num_layers=1, n_q=8, card=32,
                                delays=[0, 0, 1, 1, 2, 2, 3, 3], stereo=True, hidden_scale=2), [(2, 15, 4)]),
}


def _text(B, S, E, seed):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, S, E, generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    if B > 1:
        mask[1, S // 2:] = 0
    if B > 2:
        mask[2] = 0
    return hidden, mask


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request, tmp_path_factory):
    kw, shapes = ARCHS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    xp = R.musicgen_xp_cfg(**kw)
    R.make_checkpoint(folder, xp, seed=4)
    loaded = load_audiocraft_checkpoint(folder, cache=False)
    return xp, shapes, R.load_reference(folder), loaded


def test_loader_dispatches_on_lm_model(arch):
    xp, _, _, loaded = arch
    assert isinstance(loaded.lm, MusicGenLM) and loaded.lm_model == "transformer_lm"
    assert loaded.kind == "music" and loaded.t5_name == xp["conditioners"]["description"]["t5"]["name"]
    assert loaded.lm.config.delays == tuple(xp["codebooks_pattern"]["delay"]["delays"])


def test_logits_match_reference(arch):
    xp, shapes, ref, loaded = arch
    tl = xp["transformer_lm"]
    E = M.T5_DIMS[xp["conditioners"]["description"]["t5"]["name"]]
    for i, (B, S, St) in enumerate(shapes):
        hidden, mask = _text(B, St, E, seed=i)
        seq = torch.randint(0, tl["card"] + 1, (B, tl["n_q"], S), generator=torch.Generator().manual_seed(i))
        # the CFG batch: conditional rows + null rows
        seq2, hidden2, mask2 = torch.cat([seq, seq]), torch.cat([hidden, 0 * hidden]), torch.cat([mask, 0 * mask])
        want = R.reference_logits(ref, seq2, hidden2, mask2).numpy()
        got = np.asarray(loaded.lm(*[jnp.asarray(x.numpy()) for x in (seq2, hidden2, mask2)]))
        assert got.shape == want.shape == (2 * B, tl["n_q"], S, tl["card"])
        err = np.abs(got - want).max()
        assert err <= TOL, f"B,S,S_text={B, S, St}: max |diff| {err:.2e}"


def test_per_frame_predictions_match_compute_predictions(arch):
    xp, shapes, ref, loaded = arch
    tl = xp["transformer_lm"]
    B, S, St = shapes[0]
    E = M.T5_DIMS[xp["conditioners"]["description"]["t5"]["name"]]
    hidden, mask = _text(B, St, E, seed=9)
    T = 12
    codes = torch.randint(0, tl["card"], (B, tl["n_q"], T), generator=torch.Generator().manual_seed(3))
    want, want_mask = R.reference_predictions(ref, codes, hidden, mask)
    d = loaded.lm.config.delays
    seq = pattern.build_sequence(jnp.asarray(codes.numpy()), d, tl["card"])[:, :, :T + 1]
    logits = loaded.lm(seq, jnp.asarray(hidden.numpy()), jnp.asarray(mask.numpy()))
    got = np.asarray(pattern.revert_logits(logits, d, T))
    valid = np.asarray(pattern.frame_valid_mask(T, d))
    np.testing.assert_array_equal(valid, want_mask[0].numpy())
    assert np.abs(got[:, valid] - want.numpy()[:, valid]).max() <= TOL


@pytest.mark.parametrize("P", [0, 5])
def test_greedy_generate_codes_identical(arch, P):
    xp, shapes, ref, loaded = arch
    tl = xp["transformer_lm"]
    B, _, St = shapes[0]
    E = M.T5_DIMS[xp["conditioners"]["description"]["t5"]["name"]]
    hidden, mask = _text(B, St, E, seed=11)
    T = 16
    prompt = None
    if P:
        prompt = torch.randint(0, tl["card"], (B, tl["n_q"], P), generator=torch.Generator().manual_seed(2)).numpy()
    want = R.reference_generate(ref, hidden, mask, num_frames=T, prompt=prompt, use_sampling=False)
    got = np.asarray(generate(loaded.lm, jnp.asarray(hidden.numpy()), jnp.asarray(mask.numpy()),
                              config=MusicGenGenerationConfig(use_sampling=False), num_frames=T, prompt=prompt))
    assert got.shape == want.shape == (B, tl["n_q"], T)
    np.testing.assert_array_equal(got, want)


def test_pipeline_from_pretrained_dispatches_to_musicgen(tmp_path, monkeypatch):
    """``MagnetPipeline.from_pretrained(<musicgen folder>)`` gives the MusicGen sibling; its greedy codes are
    audiocraft's ``LMModel.generate`` codes for the same text hidden states."""
    import magnet_jax.convert.encodec as codec_pkg
    import magnet_jax.convert.t5 as t5_mod
    from magnet_jax.codec.random_init import random_encodec
    from magnet_jax.pipelines.magnet import MagnetPipeline
    from magnet_jax.pipelines.musicgen import MusicGenPipeline

    xp = R.musicgen_xp_cfg(dim=32, num_heads=2, num_layers=2, card=2048, segment_duration=1)
    R.make_checkpoint(tmp_path, xp, seed=6)
    real_stack = t5_mod.load_text_stack
    monkeypatch.setattr(t5_mod, "load_text_stack", lambda name, dim, **kw: real_stack("tiny", dim))
    monkeypatch.setattr(codec_pkg, "load_encodec", lambda src, num_codebooks=None, **kw: random_encodec(
        sample_rate=32000, frame_rate=50, num_codebooks=4, bins=2048, channels=1, seed=0))
    pipe = MagnetPipeline.from_pretrained(str(tmp_path))
    assert isinstance(pipe, MusicGenPipeline) and pipe.window_seconds == 1.0
    assert pipe.generation == MusicGenGenerationConfig()          # audiocraft defaults: top-k 250, cfg 3
    codes = np.asarray(pipe.generate_codes(["a b c", "d"], duration=0.3, use_sampling=False))
    hidden, mask = pipe.encode_text(["a b c", "d"])
    want = R.reference_generate(R.load_reference(tmp_path), torch.from_numpy(np.array(hidden)),
                                torch.from_numpy(np.array(mask)), num_frames=15)
    np.testing.assert_array_equal(codes, want)


def test_converted_once_and_cached(tmp_path, monkeypatch):
    """The second load reads the safetensors cache (no .bin read), keeps the MusicGen config, and applies
    run-time overrides."""
    import magnet_jax.convert.checkpoint as ac
    monkeypatch.setenv("MAGNET_JAX_CACHE", str(tmp_path / "cache"))
    R.make_checkpoint(tmp_path / "ck", R.musicgen_xp_cfg(dim=32, num_heads=2, num_layers=1, card=64,
                                                         delays=[0, 1, 1, 2]), seed=1)
    first = load_audiocraft_checkpoint(tmp_path / "ck")
    monkeypatch.setattr(ac, "read_state_dict_bin", lambda p: pytest.fail("the cache was not used"))
    again = load_audiocraft_checkpoint(tmp_path / "ck", dtype="bfloat16")
    assert isinstance(again.lm, MusicGenLM) and again.lm.config.delays == (0, 1, 1, 2)
    assert again.lm.config.dtype == "bfloat16" and again.lm_model == "transformer_lm" and again.kind == "music"
    np.testing.assert_array_equal(np.asarray(first.lm.heads[...]), np.asarray(again.lm.heads[...]))
