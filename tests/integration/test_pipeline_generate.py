"""MagnetPipeline on a random-init tiny model: generation, continuation, infill, long-form, the window bound."""
import jax.numpy as jnp
import numpy as np
import pytest

from magnet_jax.pipelines import magnet as pipeline_module

STEPS = dict(decoding_steps=(4, 2, 2, 2))


@pytest.fixture(scope="module")
def tiny(tiny_magnet_pipeline):
    return tiny_magnet_pipeline


@pytest.fixture
def lm_calls(monkeypatch):
    """Records the frame count of every LM generation call the pipeline makes."""
    calls = []
    real = pipeline_module._generate

    def spy(*a, num_frames=None, **kw):
        calls.append(num_frames)
        return real(*a, num_frames=num_frames, **kw)
    monkeypatch.setattr(pipeline_module, "_generate", spy)
    return calls


def test_generate_shapes_and_determinism(tiny):
    a = tiny.generate(["calm piano", "happy rock with drums"], duration=1.0, seed=1, **STEPS)
    b = tiny.generate(["calm piano", "happy rock with drums"], duration=1.0, seed=1, **STEPS)
    c = tiny.generate(["calm piano", "happy rock with drums"], duration=1.0, seed=2, **STEPS)
    assert a.shape == (2, 1, tiny.sample_rate) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bare_string_is_one_text(tiny):
    one = tiny.generate_codes("calm piano", duration=1.0, seed=1, **STEPS)
    listed = tiny.generate_codes(["calm piano"], duration=1.0, seed=1, **STEPS)
    assert one.shape[0] == 1
    np.testing.assert_array_equal(np.asarray(one), np.asarray(listed))
    wav = tiny.decode_codes(tiny.generate_codes(None, duration=1.0, seed=0, **STEPS))[0]
    assert tiny.infill(wav, tiny.sample_rate, "calm piano", start=0.2, end=0.4, **STEPS).shape[0] == 1


def test_continuation_keeps_prompt_codes_and_infill_keeps_context(tiny):
    codes = tiny.generate_codes(["calm piano"], duration=1.0, seed=3, **STEPS)
    assert codes.shape == (1, 4, 50) and int(codes.max()) < tiny.lm.config.card
    cont = tiny.generate_codes(["calm piano"], duration=1.6, seed=4, prompt=codes[..., :20], **STEPS)
    np.testing.assert_array_equal(np.asarray(cont[..., :20]), np.asarray(codes[..., :20]))
    assert cont.shape[-1] == 80
    wav = tiny.decode_codes(codes)[0]
    filled = tiny.infill(wav, tiny.sample_rate, ["calm piano"], start=0.4, end=0.6, seed=5, **STEPS)
    assert filled.shape[-1] == wav.shape[-1]
    src = np.asarray(tiny.encode_audio(wav, tiny.sample_rate))
    init = jnp.asarray(src)
    region = jnp.zeros((1, 50), bool).at[:, 20:30].set(True)
    out = np.asarray(tiny.generate_codes(["calm piano"], seed=5, init_codes=init, infill_mask=region, **STEPS))
    keep = ~np.asarray(region)[0]
    np.testing.assert_array_equal(out[..., keep], src[..., keep])


def test_long_form_windows_continue_each_other(tiny, lm_calls):
    codes = np.asarray(tiny.generate_codes(["calm piano"], duration=5.0, seed=6, **STEPS))
    assert codes.shape == (1, 4, 250) and (codes < tiny.lm.config.card).all()
    assert lm_calls and set(lm_calls) == {tiny.lm.config.segment_frames}       # whole windows, never more
    with pytest.raises(ValueError, match="beyond the model"):
        tiny.generate_codes(["calm piano"], duration=5.0, long_form=False)


def test_lm_never_runs_beyond_its_window(tiny, lm_calls):
    window = tiny.lm.config.segment_frames                                      # 100 frames (2 s), span 3
    assert tiny.lm_frames() == 99 and tiny.lm_frames(tiny.generation.replace(span_arrangement="stride1")) == 100
    codes = tiny.generate_codes(["calm piano"], seed=0, **STEPS)                      # default duration = the window
    assert lm_calls == [window] and codes.shape[-1] == 99                       # audiocraft: 100 -> 99
    assert tiny.generate(["calm piano"], seed=0, **STEPS).shape[-1] == 99 * tiny.sample_rate // 50
    lm_calls.clear()
    assert tiny.generate_codes(["calm piano"], duration=1.99, seed=0, **STEPS).shape[-1] == 99
    assert tiny.generate_codes(["calm piano"], duration=1.9, seed=0, **STEPS).shape[-1] == 95
    s1 = tiny.generate_codes(["calm piano"], seed=0, span_arrangement="stride1", **STEPS)
    assert s1.shape[-1] == window
    assert max(lm_calls) <= window


def test_infill_in_the_windows_last_partial_span(tiny, lm_calls):
    """A 100-frame clip (span 3): two LM calls of 99 frames; the region is regenerated, the rest kept."""
    src = np.asarray(tiny.generate_codes(["calm piano"], seed=1, span_arrangement="stride1", **STEPS))   # [1, 4, 100]
    lm_calls.clear()
    for a, b in [(10, 30), (60, 100), (0, 100)]:
        region = np.zeros((1, 100), bool)
        region[:, a:b] = True
        out = np.asarray(tiny.generate_codes(["calm piano"], seed=2, init_codes=jnp.asarray(src),
                                             infill_mask=jnp.asarray(region), **STEPS))
        assert out.shape == src.shape
        np.testing.assert_array_equal(out[..., ~region[0]], src[..., ~region[0]])
        assert (out[..., region[0]] != src[..., region[0]]).mean() > 0.5       # regenerated (random model)
    assert lm_calls and max(lm_calls) == 99


def test_unconditional_and_bad_inputs(tiny):
    u = tiny.generate(None, duration=1.0, num_samples=2, seed=0, **STEPS)
    assert u.shape == (2, 1, tiny.sample_rate)
    with pytest.raises(ValueError, match="no text"):
        tiny.generate([], duration=0.5)
    for bad in (0, -1, float("nan"), float("inf"), 0.001):
        with pytest.raises(ValueError, match="duration"):
            tiny.generate(["calm piano"], duration=bad)
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode_audio(np.full((1, 100), np.nan), 32000)
    with pytest.raises(ValueError, match="not inside"):
        tiny.infill(np.zeros((1, 32000), np.float32), 32000, ["calm piano"], start=0.5, end=3.0)
    with pytest.raises(ValueError, match="extend_stride"):
        tiny.generate_codes(["calm piano"], duration=5.0, extend_stride=2.0)


def test_texts_must_be_strings_and_counts_positive(tiny):
    """Issue 32: bytes, numbers and num_samples=0 are errors, not one clip per byte / number / a single clip."""
    from magnet_jax.util.user_input import UserError
    for bad in (b"jazz", [1, 2, 3], ["jazz", b"rock"], 42):
        with pytest.raises(UserError, match="texts must be"):
            tiny.generate(bad, duration=0.5, **STEPS)
    for n in (0, -2):
        with pytest.raises(UserError, match="num_samples"):
            tiny.generate(None, duration=0.5, num_samples=n, **STEPS)


def test_time_limit_stops_long_form_between_lm_calls(tiny, monkeypatch):
    """Issue 32 (the web app's per-request limit): past the deadline, the next LM call is not started."""
    from magnet_jax.util import deadline
    calls = []
    real = pipeline_module._generate

    def first_call_overruns(*a, num_frames=None, **kw):
        calls.append(num_frames)
        out = real(*a, num_frames=num_frames, **kw)
        deadline._local.deadline = (0.0, 60.0)       # the clock ran out during this window
        return out
    monkeypatch.setattr(pipeline_module, "_generate", first_call_overruns)
    with deadline.limit(60.0):
        with pytest.raises(deadline.TimeLimitExceeded, match="60 s time limit"):
            tiny.generate_codes(["calm piano"], duration=5.0, seed=0, **STEPS)
    assert len(calls) == 1
    deadline.check()                                  # no limit outside the block
