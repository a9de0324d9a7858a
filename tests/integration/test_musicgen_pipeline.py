"""MusicGenPipeline on a random-init tiny model: generation, continuation, audiocraft's long-form windows."""
import numpy as np
import pytest

from magnet_jax.pipelines import musicgen as mg_pipeline


@pytest.fixture(scope="module")
def tiny(tiny_musicgen_pipeline):
    return tiny_musicgen_pipeline


def test_generate_continuation_and_determinism(tiny):
    a = np.asarray(tiny.generate_codes(["happy rock", "calm"], duration=0.5, seed=1, top_k=20))
    b = np.asarray(tiny.generate_codes(["happy rock", "calm"], duration=0.5, seed=1, top_k=20))
    assert a.shape == (2, tiny.lm.config.n_q, 25) and (a < tiny.lm.config.card).all()
    np.testing.assert_array_equal(a, b)
    cont = np.asarray(tiny.generate_codes(["happy rock", "calm"], duration=0.8, prompt=a[:, :, :10],
                                          use_sampling=False))
    np.testing.assert_array_equal(cont[:, :, :10], a[:, :, :10])
    wav = tiny.generate(["x"], duration=0.3, seed=0)
    assert wav.shape[-1] == int(round(0.3 * tiny.sample_rate)) and np.isfinite(wav).all()
    with pytest.raises(ValueError, match="infill"):
        tiny.infill(wav[0], tiny.sample_rate, ["x"], start=0.0, end=0.1)


def test_bad_generation_parameters_are_one_line_errors(tiny, tiny_magnet_pipeline):
    with pytest.raises(ValueError, match="hybrid_prefix_seconds applies to a MAGNeT pipeline"):
        tiny.generate_codes(["x"], duration=0.3, hybrid_prefix_seconds=0.1)
    for p in (tiny, tiny_magnet_pipeline):
        with pytest.raises(ValueError, match=r"unknown generation parameter\(s\) \['top_z'\]"):
            p.generate_codes(["x"], duration=0.3, top_z=3)


def test_long_form_follows_audiocraft_generate_tokens(tiny, monkeypatch):
    """Beyond the window: windows of <= window frames, each prompted with the last window - stride frames."""
    calls = []
    real = mg_pipeline._generate

    def spy(lm, h, m, *, num_frames, prompt=None, **kw):
        calls.append((num_frames, None if prompt is None else int(prompt.shape[-1])))
        return real(lm, h, m, num_frames=num_frames, prompt=prompt, **kw)
    monkeypatch.setattr(mg_pipeline, "_generate", spy)
    W = tiny.lm.config.segment_frames                          # tiny: 100 frames (2 s)
    stride_s = 1.2
    out = tiny.generate_codes(["x"], duration=5.0, extend_stride=stride_s, use_sampling=False)
    S = int(50 * stride_s)
    assert out.shape[-1] == 250
    # audiocraft: offsets 0, 60, 120, 180; prompt = last W - S frames of the previous window
    assert calls == [(W, None), (W, W - S), (W, W - S), (250 - 3 * S, W - S)], calls
