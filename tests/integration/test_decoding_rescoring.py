"""Rescoring and hybrid inference with the tiny random-init MAGNeT + MusicGen (no torch)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.decoding import GenerationConfig, generate
from magnet_jax.decoding.musicgen import generate as musicgen_generate
from magnet_jax.decoding.rescoring import rescorer_probs_fn
from magnet_jax.model import delay_pattern as pattern
from magnet_jax.pipelines import companion as C
from magnet_jax.pipelines.companion import prefix_rng

STEPS = (3, 1, 1, 1)


@pytest.fixture(scope="module")
def pipe(tiny_magnet_pipeline):
    comp = C.from_config("tiny", tiny_magnet_pipeline.lm, tiny_magnet_pipeline.codec)
    return dataclasses.replace(tiny_magnet_pipeline, rescorer=comp)


def test_rescorer_probs_are_musicgen_teacher_forced_cfg_probs(pipe):
    """The loop's p_rescorer equals MusicGenLM's full forward on the delayed codes, reverted to frames, CFG-mixed."""
    mg = pipe.rescorer.lm
    hidden, mask = pipe.encode_text(["calm piano", "rock"])
    T, coef = 10, 3.0
    codes = jax.random.randint(jax.random.key(1), (2, 4, T), 0, mg.config.card)
    codes = codes.at[:, 3, :].set(mg.config.mask_id)                     # a codebook not decoded yet
    seq = pattern.build_sequence(codes, mg.config.delays, mg.config.mask_id)[:, :, :T + 3]
    cond = pattern.revert_logits(mg(seq, hidden, mask), mg.config.delays, T)
    null = pattern.revert_logits(mg(seq, jnp.zeros_like(hidden), jnp.zeros_like(mask)), mg.config.delays, T)
    probs = jax.nn.softmax(null + (cond - null) * coef, axis=-1)
    graphdef, state = nnx.split(mg)
    fn = rescorer_probs_fn(graphdef, state, hidden, mask, coef)
    for stage in (0, 2):
        want = jnp.take_along_axis(probs[:, stage], codes[:, stage, :, None], axis=-1)[..., 0]
        np.testing.assert_allclose(np.asarray(fn(codes, stage)), np.asarray(want), rtol=1e-5, atol=1e-7)


def test_weight_one_is_plain_decoding_and_rescoring_changes_codes(pipe):
    hidden, mask = pipe.encode_text(["calm piano"])
    cfg = pipe.generation.replace(decoding_steps=STEPS)
    run = dict(rng=3, num_frames=24)
    plain = np.asarray(generate(pipe.lm, hidden, mask, config=cfg, **run))
    one = np.asarray(generate(pipe.lm, hidden, mask, config=cfg.replace(rescorer_weight=1.0),
                              rescorer=pipe.rescorer.lm, **run))
    np.testing.assert_array_equal(one, plain)
    only = np.asarray(generate(pipe.lm, hidden, mask, config=cfg.replace(rescorer_weight=0.0),
                               rescorer=pipe.rescorer.lm, **run))
    assert (only != plain).any()       # ranked by the rescorer alone: other spans re-masked, other codes
    # the pipeline passes its companion: the same codes through generate_codes
    via_pipe = np.asarray(pipe.generate_codes(["calm piano"], duration=24 / pipe.frame_rate, seed=0,
                                              decoding_steps=STEPS, rescorer_weight=0.0))
    direct = np.asarray(generate(pipe.lm, hidden, mask, config=cfg.replace(rescorer_weight=0.0), rng=jax.random.key(0),
                                 num_frames=24, num_samples=1, rescorer=pipe.rescorer.lm))
    np.testing.assert_array_equal(via_pipe, direct)


def test_hybrid_prefix_is_musicgen_and_rest_is_prompted_magnet(pipe):
    seed, P, D = 2, 0.2, 0.5
    codes = np.asarray(pipe.generate_codes(["drums"], duration=D, seed=seed, hybrid_prefix_seconds=P,
                                           decoding_steps=STEPS, cfg_coef=2.0))
    n = int(round(P * pipe.frame_rate))
    hidden, mask = pipe.encode_text(["drums"])
    prefix = musicgen_generate(pipe.rescorer.lm, hidden, mask, config=pipe.rescorer.generation.replace(cfg_coef=2.0),
                               rng=prefix_rng(seed), num_frames=n)
    np.testing.assert_array_equal(codes[..., :n], np.asarray(prefix))
    magnet = pipe.generate_codes(["drums"], duration=D, seed=seed, prompt=prefix, decoding_steps=STEPS)
    np.testing.assert_array_equal(codes, np.asarray(magnet))
    assert codes.shape == (1, 4, 25)


def test_errors_are_one_line(pipe, tiny_magnet_pipeline):
    hidden, mask = pipe.encode_text(["x"])
    with pytest.raises(ValueError, match="needs a rescorer"):
        generate(pipe.lm, hidden, mask, config=GenerationConfig(decoding_steps=STEPS, rescorer_weight=0.5),
                 num_frames=12)
    with pytest.raises(ValueError, match="hybrid_prefix_seconds needs a MusicGen"):
        tiny_magnet_pipeline.generate_codes(["x"], duration=0.5, hybrid_prefix_seconds=0.2)
    with pytest.raises(ValueError, match="shorter than the output"):
        pipe.generate_codes(["x"], duration=0.5, hybrid_prefix_seconds=0.6)
    from magnet_jax.model import MusicGenConfig, MusicGenLM
    other = MusicGenLM(MusicGenConfig(**{**dataclasses.asdict(pipe.rescorer.lm.config), "card": 1024}),
                       rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="rescorer's card is 1024, MAGNeT's 2048"):
        generate(pipe.lm, hidden, mask, config=GenerationConfig(decoding_steps=STEPS, rescorer_weight=0.5),
                 num_frames=12, rescorer=other)
