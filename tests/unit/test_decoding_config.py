"""GenerationConfig: the one definition of the generation defaults, and its checks."""
from __future__ import annotations

import math

import pytest

from magnet_jax.decoding import GenerationConfig, first_stage_steps


def test_defaults_are_set_generation_params_music_10s():
    c = GenerationConfig()
    assert (c.use_sampling, c.temp, c.top_k, c.top_p, c.max_cfg_coef, c.min_cfg_coef, c.decoding_steps,
            c.span_arrangement, c.span_scoring, c.anneal_temp) == (True, 3.0, 0, 0.9, 10.0, 1.0, (20, 10, 10, 10),
                                                                    "nonoverlap", "max", True)
    assert GenerationConfig.music() == GenerationConfig.for_model("music", 10.0) == c


def test_for_model_kinds_and_window_rule():
    a = GenerationConfig.for_model("audio", 10.0)
    assert (a.temp, a.top_p, a.max_cfg_coef, a.min_cfg_coef, a.decoding_steps) == (3.5, 0.8, 20.0, 1.0,
                                                                                  (20, 10, 10, 10))
    assert a == GenerationConfig.audio(10.0)
    # the demo's rule int(20 * duration // 10): 30 s models start with 60 steps, 2 s with 4, never below 1
    assert GenerationConfig.for_model("music", 30.0).decoding_steps == (60, 10, 10, 10)
    assert GenerationConfig.for_model("music", 2.0).decoding_steps == (4, 10, 10, 10)
    assert [first_stage_steps(d) for d in (0.1, 0.5, 1.0, 10.0, 15.0, 30.0)] == [1, 1, 2, 20, 30, 60]
    assert GenerationConfig.for_model("music", 30.0, decoding_steps=(20, 10, 10, 10)).decoding_steps[0] == 20
    with pytest.raises(ValueError, match="kind"):
        GenerationConfig.for_model("speech", 10.0)


def test_dict_round_trip_and_hashing():
    c = GenerationConfig.audio(30.0, span_arrangement="stride1")
    d = c.to_dict()
    assert d["decoding_steps"] == [60, 10, 10, 10]
    assert GenerationConfig.from_dict(d) == c and hash(GenerationConfig.from_dict(d)) == hash(c)
    with pytest.raises(ValueError, match="unknown GenerationConfig fields"):
        GenerationConfig.from_dict({**d, "tmep": 1.0})
    # numpy / int inputs normalise to the same (hashable, static) config
    import numpy as np
    assert GenerationConfig(temp=np.float32(3.0), top_k=np.int64(0), decoding_steps=[20, 10, 10, 10]) == \
        GenerationConfig()


@pytest.mark.parametrize("kw,what", [
    (dict(temp=math.nan), "temp"), (dict(temp=math.inf), "temp"), (dict(temp=-1.0), "temp"),
    (dict(max_cfg_coef=math.nan), "max_cfg_coef"), (dict(min_cfg_coef=-math.inf), "min_cfg_coef"),
    (dict(top_p=1.5), "top_p"), (dict(top_p=-0.1), "top_p"), (dict(top_p=math.nan), "top_p"),
    (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"), (dict(temp="hot"), "temp"),
    (dict(decoding_steps=(20, 0, 10, 10)), "decoding_steps"), (dict(decoding_steps="20,10"), "decoding_steps"),
    (dict(decoding_steps=()), "decoding_steps"), (dict(decoding_steps=(2.5, 1, 1, 1)), "decoding_steps"),
    (dict(span_arrangement="overlap"), "span_arrangement"), (dict(span_scoring="min"), "span_scoring"),
    (dict(use_sampling="yes"), "use_sampling"), (dict(choice_temp=-1.0), "choice_temp"),
    (dict(choice_temp=math.inf), "choice_temp"),
])
def test_bad_knobs_are_one_line_errors(kw, what):
    with pytest.raises(ValueError, match=what) as e:
        GenerationConfig(**kw)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=what):
        GenerationConfig().replace(**kw)


def test_with_knobs_applies_over_a_config_and_names_the_source_of_a_bad_one():
    from magnet_jax.decoding.config import MusicGenGenerationConfig, with_knobs
    base = GenerationConfig.music()
    assert with_knobs(base, {}, "x") is base
    assert with_knobs(base, {"max_cfg_coef": 3.0}, "x") == base.replace(max_cfg_coef=3.0)
    assert with_knobs(MusicGenGenerationConfig(), {"cfg_coef": 5.0}, "x").cfg_coef == 5.0
    with pytest.raises(ValueError, match=r"^f\.json: generation \{'cfg_coef': 3\}: not GenerationConfig fields"):
        with_knobs(base, {"cfg_coef": 3}, "f.json")
    with pytest.raises(ValueError, match=r"^--generation: generation \{'top_p': 2\}: GenerationConfig.top_p must be"):
        with_knobs(base, {"top_p": 2}, "--generation")
