"""MusicGen-melody vs audiocraft 1.3.0: ``ChromaExtractor`` values, the ``ChromaStemConditioner`` chroma
(``match_len_on_eval``), melody-conditioned logits of ``LMModel`` (every tensor random, released layout, the
chroma + text prepended as the released ``chroma2music`` fuser, and the chroma-prepend / text-cross variant),
identical greedy ``generate`` codes, and the pipeline's ``melody=`` / ``generate_with_chroma`` API.

demucs is not installed: the reference conditioner's stem separation is replaced by the identity in these
tests only (:mod:`tests.reference.melody_ref`); magnet-jax then also runs on the full mix.
"""
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from magnet_jax.convert import load_audiocraft_checkpoint
from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.decoding.musicgen import generate
from magnet_jax.model import chroma as CH
from magnet_jax.model.musicgen_melody import MusicGenMelodyLM
from tests.reference import melody_ref as MR

TOL = 1e-4
SR = 32000


def _signal(n, seed, channels=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    tone = sum(torch.sin(2 * np.pi * f * t) for f in (220.0 * 2 ** (seed % 7 / 12), 330.0, 523.25))
    return (tone[None] + 0.5 * torch.randn(channels, n, generator=g)).numpy().astype(np.float32)


@pytest.mark.parametrize("sr,radix2_exp,argmax", [(32000, 14, True), (32000, 12, False), (16000, 12, True)])
def test_chroma_features_match_chroma_extractor(sr, radix2_exp, argmax):
    import librosa
    MR._patch()
    ex = MR.ac_chroma.ChromaExtractor(sample_rate=sr, n_chroma=12, radix2_exp=radix2_exp, argmax=argmax)
    np.testing.assert_allclose(CH.chroma_filterbank(sr, 2 ** radix2_exp, 12),
                               librosa.filters.chroma(sr=sr, n_fft=2 ** radix2_exp, tuning=0, n_chroma=12), atol=1e-7)
    for n in (70000, 1000):          # a long clip, and one shorter than the window (padded as the reference)
        wav = np.concatenate([_signal(n, 1), _signal(n, 2)])
        with torch.no_grad():
            want = ex(torch.from_numpy(wav)[:, None]).numpy()
        got = np.asarray(CH.extract_chroma(wav, sr, radix2_exp=radix2_exp, argmax=argmax))
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= TOL


ARCHS = {"released_prepend": dict(text_fuse="prepend", dim=32, num_heads=2, num_layers=2, card=64),
         "text_cross": dict(text_fuse="cross", dim=48, num_heads=3, num_layers=2, card=64, delays=[0, 1, 2, 4])}


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    xp = MR.melody_xp_cfg(segment_duration=2, **ARCHS[request.param])
    MR.make_checkpoint(folder, xp, seed=5)
    return xp, MR.load_reference(folder), load_audiocraft_checkpoint(folder, cache=False)


def _text(B, S, seed):
    g = torch.Generator().manual_seed(seed)
    hidden, mask = torch.randn(B, S, 768, generator=g), torch.ones(B, S, dtype=torch.long)
    mask[-1, S // 2:] = 0
    return hidden, mask


def _ours_chroma(lm, melodies):
    """As the pipeline: mono (channel mean), padded to the longest, extracted, matched to the window."""
    N = max(m.shape[-1] for m in melodies)
    wavs = np.stack([np.pad(m.mean(0), (0, N - m.shape[-1])) for m in melodies])
    c = lm.config
    return CH.match_length(CH.extract_chroma(wavs, SR, radix2_exp=c.chroma_radix2_exp, argmax=c.chroma_argmax),
                           c.chroma_frames)


def test_loader_reads_melody_layout(arch):
    xp, ref, loaded = arch
    lm = loaded.lm
    assert isinstance(lm, MusicGenMelodyLM) and loaded.lm_model == "transformer_lm"
    c = lm.config
    assert (c.n_chroma, c.chroma_radix2_exp, c.chroma_argmax, c.chroma_sample_rate) == (12, 14, True, SR)
    assert c.text_fuse == ("prepend" if "description" in xp["fuser"]["prepend"] else "cross")
    assert c.chroma_frames == 16     # 1 + 2 s * 32 kHz // 4096: the conditioner's chroma_len
    w = ref.condition_provider.conditioners["self_wav"].output_proj.weight.detach().numpy()
    np.testing.assert_array_equal(np.asarray(lm.chroma_kernel[...]), w.T)


def test_conditioner_chroma_matches_reference(arch):
    _, ref, loaded = arch
    for n in (41600, 90000):         # repeated up to chroma_len, truncated to it
        wavs = np.concatenate([_signal(n, 3), _signal(n, 4)])
        got = np.asarray(_ours_chroma(loaded.lm, [w[None] for w in wavs]))
        np.testing.assert_array_equal(got, MR.reference_chroma(ref, wavs, SR))


def test_melody_logits_match_reference(arch):
    xp, ref, loaded = arch
    card, K = xp["transformer_lm"]["card"], xp["transformer_lm"]["n_q"]
    melodies = [_signal(41600, 5), _signal(90000, 6, channels=2), np.zeros((1, 30000), np.float32)]
    hidden, mask = _text(3, 6, seed=1)
    seq = torch.randint(0, card + 1, (3, K, 11), generator=torch.Generator().manual_seed(2))
    want = MR.reference_logits(ref, seq, hidden, mask, melodies, SR)
    got = np.asarray(loaded.lm(jnp.asarray(seq.numpy()), jnp.asarray(hidden.numpy()), jnp.asarray(mask.numpy()),
                               _ours_chroma(loaded.lm, melodies)))
    assert got.shape == want.shape == (3, K, 11, card)
    assert np.abs(got - want).max() <= TOL


@pytest.mark.parametrize("which", ["melody_and_none", "no_melody"])
def test_greedy_generate_with_melody_identical(arch, which):
    _, ref, loaded = arch
    lm = loaded.lm
    hidden, mask = _text(2, 5, seed=7)
    melodies = [_signal(50000, 8), None] if which == "melody_and_none" else [None, None]
    want = MR.reference_generate(ref, hidden, mask, melodies, SR, num_frames=12)
    chroma = None
    if melodies[0] is not None:
        chroma = jnp.concatenate([_ours_chroma(lm, melodies[:1]), lm.null_chroma(1)])
    got = np.asarray(generate(lm, jnp.asarray(hidden.numpy()), jnp.asarray(mask.numpy()), num_frames=12,
                              config=MusicGenGenerationConfig(use_sampling=False), chroma=chroma))
    np.testing.assert_array_equal(got, want)


def test_kv_cached_decode_equals_full_recompute(arch):
    _, _, loaded = arch
    lm = loaded.lm
    hidden, mask = (jnp.asarray(x.numpy()) for x in _text(2, 4, seed=9))
    chroma = _ours_chroma(lm, [_signal(40000, 9), _signal(40000, 10)])
    seq = jnp.asarray(np.random.default_rng(0).integers(0, lm.config.card, (2, lm.config.n_q, 7)))
    full = np.asarray(lm(seq, hidden, mask, chroma))
    prefix, cond, tm = lm.fuse(hidden, mask, chroma)
    P = prefix.shape[1]
    cache = lm.init_cache(2, P + 7)
    kv, km = lm.cross_keys_values(cond), lm.text_key_mask(tm)
    first, cache = lm.decode(seq[:, :, :3], 0, cache, kv, km, prefix=prefix)
    steps = [first]
    for s in range(3, 7):
        out, cache = lm.decode(seq[:, :, s:s + 1], P + s, cache, kv, km)
        steps.append(out)
    assert np.abs(np.concatenate([np.asarray(x) for x in steps], axis=2) - full).max() <= TOL


def test_pipeline_melody_api(tmp_path, monkeypatch):
    """``MagnetPipeline.from_pretrained(<melody folder>)``: ``generate(texts, melody=...)`` and
    ``generate_with_chroma`` give audiocraft's greedy codes for the pipeline's own T5 states."""
    import magnet_jax.convert.encodec as codec_pkg
    import magnet_jax.convert.t5 as t5_mod
    from magnet_jax.codec.random_init import random_encodec
    from magnet_jax.pipelines.magnet import MagnetPipeline

    xp = MR.melody_xp_cfg(dim=32, num_heads=2, num_layers=1, card=2048, segment_duration=1)
    MR.make_checkpoint(tmp_path, xp, seed=2)
    real_stack = t5_mod.load_text_stack
    monkeypatch.setattr(t5_mod, "load_text_stack", lambda name, dim, **kw: real_stack("tiny", dim))
    monkeypatch.setattr(codec_pkg, "load_encodec", lambda src, num_codebooks=None, **kw: random_encodec(
        sample_rate=SR, frame_rate=50, num_codebooks=4, bins=2048, channels=1, seed=0))
    pipe = MagnetPipeline.from_pretrained(str(tmp_path))
    assert pipe.has_melody
    melody = _signal(48000, 11, channels=2)
    texts = ["a b c", "d"]
    codes = np.asarray(pipe.generate_codes(texts, duration=0.2, use_sampling=False, melody=melody,
                                           melody_sample_rate=SR))
    hidden, mask = pipe.encode_text(texts)
    want = MR.reference_generate(MR.load_reference(tmp_path), torch.from_numpy(np.array(hidden)),
                                 torch.from_numpy(np.array(mask)), [melody, melody], SR, num_frames=10)
    np.testing.assert_array_equal(codes, want)
    wav, toks = pipe.generate_with_chroma(texts, [melody, melody], SR, return_tokens=True, duration=0.2,
                                          use_sampling=False)
    np.testing.assert_array_equal(toks, want)
    assert wav.shape == (2, 1, int(0.2 * SR))
    a440 = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32)
    chroma = np.asarray(pipe.melody_chroma(pipe._melodies(a440, SR, 1)))
    assert chroma.shape == (1, 8, 12) and (chroma.argmax(-1) == 9).all()    # A (the null chroma is C, bin 0)
