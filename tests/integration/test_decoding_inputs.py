"""Checks at the public generate API (issue 12 item 5): bad codes, text, masks and counts are one-line
ValueErrors naming the problem, before anything is compiled; good inputs become (known, keep)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from flax import nnx

from magnet_jax import decoding as D
from magnet_jax.decoding.inputs import prepare_inputs
from magnet_jax.model import MagnetConfig, MagnetLM

C = MagnetConfig(card=64, dim=32, num_heads=2, num_layers=1, segment_duration=0.6)     # 30 frames
B, K, S, E, T = 2, 4, 3, 768, 30
FAST = D.GenerationConfig(decoding_steps=(2, 1, 1, 1))


def _prep(hidden=None, mask=None, prompt=None, prompt_lens=None, infill_mask=None, init_codes=None,
          num_frames=T, num_samples=None, config=FAST):
    return prepare_inputs(C, hidden, mask, prompt, prompt_lens, infill_mask, init_codes, num_frames, num_samples,
                          config)


def _text():
    return np.random.RandomState(0).randn(B, S, E).astype(np.float32), np.ones((B, S), np.int32)


def test_good_inputs_become_known_codes_and_a_keep_mask():
    rs = np.random.RandomState(1)
    prompt = rs.randint(0, 64, (B, K, 6))
    prompt[1, :, 4:] = 64                                      # beyond item 1's prompt: the mask id is fine
    init = rs.randint(0, 64, (B, K, T))
    region = np.zeros((B, T), bool)
    region[:, 20:] = True
    init[:, :, 20:] = 64                                       # the regenerated region may hold the mask id
    h, m, known, keep = _prep(*_text(), prompt=prompt, prompt_lens=[6, 4], infill_mask=region, init_codes=init)
    assert known.shape == (B, K, 30) and keep.shape == (B, 30)          # 30 = 10 chunks of 3: nothing trimmed
    expect_keep = ~region
    np.testing.assert_array_equal(np.asarray(keep), expect_keep)
    exp = init.copy()
    exp[0, :, :6] = prompt[0]
    exp[1, :, :4] = prompt[1, :, :4]
    np.testing.assert_array_equal(np.asarray(known)[np.broadcast_to(expect_keep[:, None], exp.shape)],
                                  exp[np.broadcast_to(expect_keep[:, None], exp.shape)])
    _, _, known, keep = _prep(num_frames=29)                   # nonoverlap trims to whole chunks
    assert known.shape == (1, K, 27)
    _, _, known, _ = _prep(num_frames=29, config=FAST.replace(span_arrangement="stride1"))
    assert known.shape == (1, K, 29)


NAN_TEXT = np.full((B, S, E), np.nan, np.float32)
INF_TEXT = np.where(np.arange(E) == 3, np.inf, 0.0).astype(np.float32) * np.ones((B, S, 1), np.float32)
PROMPT = np.zeros((B, K, 5), np.int64)


def _with(a, idx, value):
    a = np.array(a)
    a[idx] = value
    return a


@pytest.mark.parametrize("kw,what", [
    (dict(prompt=_with(PROMPT, (0, 1, 2), 64)), r"prompt has codes outside \[0, 64\) where they are kept"),
    (dict(prompt=_with(PROMPT, (1, 3, 0), -1)), r"prompt has codes outside \[0, 64\)"),
    (dict(prompt=_with(PROMPT, (0, 0, 4), 99), prompt_lens=[4, 5]), r"outside \[0, 64\] in the regenerated"),
    (dict(prompt=PROMPT.astype(np.float32)), "integer codes"),
    (dict(prompt=PROMPT, prompt_lens=[6, 5]), r"prompt_lens must be 2 integers in \[0, 5\]"),
    (dict(prompt=PROMPT, prompt_lens=[-1, 5]), "prompt_lens"),
    (dict(prompt=PROMPT, prompt_lens=[1]), "prompt_lens"),
    (dict(prompt_lens=[1, 2]), "prompt_lens given without prompt"),
    (dict(prompt=np.zeros((B, K, 30), np.int32)), "P < T"),
    (dict(init_codes=_with(np.zeros((B, K, T), np.int32), (0, 0, 0), 2048),
          infill_mask=np.ones((B, T), bool) & (np.arange(T) > 3)), "init_codes has codes outside"),
    (dict(init_codes=_with(np.zeros((B, K, T), np.int32), (0, 0, 9), -1),
          infill_mask=np.ones((B, T), bool)), r"init_codes has codes outside \[0, 64\] in the regenerated"),
    (dict(init_codes=np.zeros((B, K, T), np.int32), infill_mask=np.full((B, T), 2)), "infill_mask must be boolean"),
    (dict(init_codes=np.zeros((B, K, T), np.int32)), "infill needs both"),
    (dict(infill_mask=np.ones((B, T), bool)), "infill needs both"),
    (dict(init_codes=np.zeros((B, K, 20), np.int32), infill_mask=np.ones((B, T), bool)), "init_codes must be"),
    (dict(hidden=NAN_TEXT, mask=np.ones((B, S))), "text_hidden has 4608 non-finite values"),
    (dict(hidden=INF_TEXT, mask=np.ones((B, S))), "text_hidden has 6 non-finite"),
    (dict(hidden=np.zeros((B, S, 512), np.float32)), r"text_hidden must be \[B, S, 768\]"),
    (dict(hidden=np.zeros((B, S, E), np.float32), mask=np.full((B, S), 2)), "text_mask must hold only 0 / 1"),
    (dict(hidden=np.zeros((B, S, E), np.float32), mask=np.ones((B, 4))), r"text_mask must be \[B, S\]"),
    (dict(mask=np.ones((B, S))), "text_mask given without text_hidden"),
    (dict(num_frames=0), "num_frames must be an integer >= 1"),
    (dict(num_frames=2.5), "num_frames must be an integer"),
    (dict(num_frames=2), "shorter than one span"),
    (dict(num_samples=0), "num_samples must be an integer >= 1"),
    (dict(num_samples=3, prompt=PROMPT), "inconsistent batch sizes"),
    (dict(config={"temp": 1.0}), "config must be a GenerationConfig"),
    (dict(config=D.GenerationConfig(decoding_steps=(2, 2))), "decoding_steps has 2 entries"),
])
def test_bad_inputs_are_one_line_errors(kw, what):
    with pytest.raises(ValueError, match=what) as e:
        _prep(**kw)
    assert "\n" not in str(e.value)


def test_the_public_api_refuses_before_compiling():
    """Through ``generate`` (and a non-finite knob through the config a pipeline override builds)."""
    lm = MagnetLM(C, rngs=nnx.Rngs(0))
    h, m = _text()
    with pytest.raises(ValueError, match="non-finite"):
        D.generate(lm, h * np.nan, m, config=FAST)
    with pytest.raises(ValueError, match="prompt has codes outside"):
        D.generate(lm, h, m, config=FAST, prompt=np.full((B, K, 3), -1))
    with pytest.raises(ValueError, match="max_cfg_coef must be a finite number"):
        D.generate(lm, h, m, config=FAST.replace(max_cfg_coef=math.nan))
    with pytest.raises(ValueError, match="rng must be a jax.random.key or an int seed"):
        D.generate(lm, h, m, config=FAST, rng="seven")
