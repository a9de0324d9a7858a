"""magnet_jax.decoding: parity with audiocraft's MagnetLMModel.generate, schedule, sampling, prompts,
infill, unconditional generation and compile-once behaviour (tiny model: dim 64, 2 layers)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from magnet_jax import decoding as D
from magnet_jax.convert import load_audiocraft_lm
from tests.reference import magnet_ref as R
from tests.reference.magnet_generate_ref import reference_generate, stage_schedule as ref_stage_schedule

B, S, E, K, CARD = 2, 5, 768, 4, 2048
FAST = (4, 2, 2, 2)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("magnet_ckpt")
    R.make_checkpoint(str(folder), R.magnet_xp_cfg(dim=64, num_heads=4, num_layers=2, segment_duration=2), seed=0)
    return R.load_reference(str(folder)), load_audiocraft_lm(str(folder), cache=False)


@pytest.fixture(scope="module")
def text():
    rs = np.random.RandomState(0)
    hidden = rs.randn(B, S, E).astype(np.float32)
    mask = np.ones((B, S), np.int32)
    mask[1, 3:] = 0                                   # item 1 has padding
    return hidden, mask


def _steps_stage(steps):
    return [s for s, n in enumerate(steps) for _ in range(n)]


# ----------------------------------------------------------------------------- greedy parity
@pytest.mark.parametrize("arrangement,scoring,T,P,steps", [
    ("nonoverlap", "max", 50, 0, FAST),
    ("nonoverlap", "prod", 64, 7, FAST),
    ("nonoverlap", "max", 100, 12, (6, 3, 2, 2)),
    ("stride1", "max", 50, 0, FAST),
    ("stride1", "max", 64, 10, (6, 3, 2, 2)),
])
def test_greedy_matches_audiocraft(models, text, arrangement, scoring, T, P, steps):
    ref, lm = models
    hidden, mask = text
    prompt = np.random.RandomState(T + P).randint(0, CARD, (B, K, P)) if P else None
    kw = dict(use_sampling=False, decoding_steps=steps, span_arrangement=arrangement, span_scoring=scoring)
    record = []
    expected = reference_generate(ref, hidden, mask, num_frames=T, prompt=prompt, record=record, **kw)
    codes, tr = D.generate_with_trace(lm, hidden, mask, config=D.GenerationConfig(**kw), rng=jax.random.key(0),
                                      num_frames=T, prompt=prompt)
    codes = np.asarray(codes)
    T_out = 3 * (T // 3) if arrangement == "nonoverlap" else T
    assert codes.shape == expected.shape == (B, K, T_out) and codes.dtype == np.int32
    # the model input of every step (stage row after masking) equals the reference's
    assert len(record) == sum(steps)
    for g, stage in enumerate(_steps_stage(steps)):
        np.testing.assert_array_equal(np.asarray(tr["seq_in"][g]), record[g][:B, stage], err_msg=f"step {g}")
    np.testing.assert_array_equal(codes, expected)


def test_per_item_prompt_lengths_match_reference(models, text):
    """A batch with prompt_lens [9, 4]: each item equals audiocraft run alone with its own prompt."""
    ref, lm = models
    hidden, mask = text
    T, lens = 48, [9, 4]
    prompt = np.random.RandomState(1).randint(0, CARD, (B, K, 9))
    cfg = D.GenerationConfig(use_sampling=False, decoding_steps=FAST, span_arrangement="stride1")
    codes = np.asarray(D.generate(lm, hidden, mask, config=cfg, rng=jax.random.key(0), num_frames=T,
                                  prompt=prompt, prompt_lens=lens))
    for b in range(B):
        exp = reference_generate(ref, hidden[b:b + 1], mask[b:b + 1], num_frames=T,
                                 prompt=prompt[b:b + 1, :, :lens[b]], use_sampling=False, decoding_steps=FAST,
                                 span_arrangement="stride1")
        np.testing.assert_array_equal(codes[b:b + 1], exp, err_msg=f"item {b}")


# ----------------------------------------------------------------------------- schedule
def test_host_schedule_matches_torch():
    for n in range(1, 257):
        ts = torch.linspace(0, 1, n)
        np.testing.assert_array_equal(D.torch_linspace_f32(n), ts.numpy(), err_msg=str(n))
        np.testing.assert_array_equal(D._mask_rates(n), torch.cos(ts * math.pi * 0.5).numpy(), err_msg=str(n))
    cfg = D.GenerationConfig()
    for n in (1, 2, 3, 7, 10, 20, 30, 60, 100):
        for n_units in (1, 15, 83, 166, 250, 498, 500, 1500):
            sch = D.stage_schedule(n, cfg, n_units)
            rows = ref_stage_schedule(n, n_units)
            np.testing.assert_array_equal(sch["mask_p"], np.asarray([r[0] for r in rows], np.float32))
            np.testing.assert_array_equal(sch["num_masked"], [r[1] for r in rows], err_msg=f"{n} {n_units}")
            np.testing.assert_array_equal(sch["cfg_coef"], np.asarray([r[2] for r in rows], np.float32))
            np.testing.assert_array_equal(sch["temperature"], np.asarray([r[3] for r in rows], np.float32))
    # the float32 pitfall of REFERENCE.md: stage with 10 steps, step 6 -> 0.49999997 * 166 -> 82 spans
    assert D.stage_schedule(10, cfg, 166)["num_masked"][6] == 82
    audio = D.GenerationConfig.audio()
    rows = ref_stage_schedule(20, 166, temp=3.5, max_cfg=20.0)
    np.testing.assert_array_equal(D.stage_schedule(20, audio)["cfg_coef"], np.asarray([r[2] for r in rows], np.float32))
    np.testing.assert_array_equal(D.stage_schedule(20, audio)["temperature"],
                                  np.asarray([r[3] for r in rows], np.float32))


@pytest.mark.parametrize("arrangement", ["nonoverlap", "stride1"])
def test_in_program_schedule_table(models, text, arrangement):
    """The real [20, 10, 10, 10] schedule at 10 s (500 frames), per-item prompts 0 and 9 frames."""
    _, lm = models
    hidden, mask = text
    T, lens = 500, [0, 9]
    cfg = D.GenerationConfig.music(10.0, span_arrangement=arrangement)
    prompt = np.random.RandomState(2).randint(0, CARD, (B, K, 9))
    codes, tr = D.generate_with_trace(lm, hidden, mask, config=cfg, rng=jax.random.key(3), num_frames=T,
                                      prompt=prompt, prompt_lens=lens)
    T_out = 498 if arrangement == "nonoverlap" else 500
    assert codes.shape == (B, K, T_out)
    g = 0
    for stage, n in enumerate(cfg.decoding_steps):
        for b, P in enumerate(lens):
            n_units = (T_out // 3 - P // 3) if arrangement == "nonoverlap" else T_out - P
            rows = ref_stage_schedule(n, n_units, temp=cfg.temp, max_cfg=cfg.max_cfg_coef, min_cfg=cfg.min_cfg_coef)
            np.testing.assert_array_equal(np.asarray(tr["num_masked"][g:g + n, b]), [r[1] for r in rows])
            np.testing.assert_array_equal(np.asarray(tr["cfg_coef"][g:g + n]), np.float32([r[2] for r in rows]))
            np.testing.assert_array_equal(np.asarray(tr["temperature"][g:g + n]), np.float32([r[3] for r in rows]))
            masked = (np.asarray(tr["seq_in"][g:g + n, b]) == CARD).sum(-1)
            if arrangement == "nonoverlap":   # P % 3 == 0: exactly num_masked spans of 3 tokens
                np.testing.assert_array_equal(masked, 3 * np.asarray([r[1] for r in rows]))
            else:                             # the span search lands near the target
                assert masked[0] == n_units
        g += n
    assert g == tr["num_masked"].shape[0] == 50
    assert float(tr["temperature"][19]) == np.float32(0.01) and abs(float(tr["temperature"][0]) - 2.85) < 1e-6


# ----------------------------------------------------------------------------- sampling
def _nucleus(probs, p):
    """Reference ``sample_top_p`` support (torch sort / cumsum)."""
    ps, idx = torch.sort(torch.from_numpy(np.array(probs)), dim=-1, descending=True)
    keep = ~((torch.cumsum(ps, -1) - ps) > p)
    out = torch.zeros_like(keep)
    return out.scatter(-1, idx, keep).numpy()


def test_top_p_and_top_k_sampler():
    rs = np.random.RandomState(0)
    logits = jnp.asarray(rs.randn(64, 300).astype(np.float32) * 3)
    sample = jax.jit(jax.vmap(D.sample_tokens, in_axes=(0, None, None, None)), static_argnums=3)
    keys = jax.random.split(jax.random.key(0), 20)
    cfg, kcfg = D.GenerationConfig(top_p=0.9), D.GenerationConfig(top_p=0.0, top_k=7)
    for temp in (3.0, 1.0, 0.3):
        probs = jax.nn.softmax(logits / temp, -1)
        nucleus = _nucleus(np.asarray(probs), 0.9)
        tok, conf = sample(keys, logits, probs, cfg)                 # [20, 64]
        assert nucleus[np.arange(64)[None], np.asarray(tok)].all()
        np.testing.assert_array_equal(np.asarray(conf[0]), np.asarray(probs))   # untruncated confidences
        top7 = np.argsort(-np.asarray(probs), -1)[:, :7]
        tok, conf = sample(keys, logits, probs, kcfg)
        assert (np.asarray(tok)[..., None] == top7[None]).any(-1).all()
        np.testing.assert_allclose(np.asarray(conf).sum(-1), 1.0, rtol=1e-5)   # renormalised top-k probs
        assert ((np.asarray(conf[0]) > 0).sum(-1) == 7).all()
    # the empirical distribution follows the (truncated) probabilities
    small = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]], jnp.float32))
    probs = jax.nn.softmax(small, -1)
    keys = jax.random.split(jax.random.key(1), 20000)
    tok = jax.vmap(lambda k: D.sample_tokens(k, small, probs, D.GenerationConfig(top_p=0.7))[0])(keys)
    freq = np.bincount(np.asarray(tok).ravel(), minlength=4) / 20000
    np.testing.assert_allclose(freq, [0.625, 0.375, 0, 0], atol=0.015)   # nucleus {0.5, 0.3}, renormalised
    tok = jax.vmap(lambda k: D.sample_tokens(k, small, probs, D.GenerationConfig(top_p=0.0))[0])(keys)
    np.testing.assert_allclose(np.bincount(np.asarray(tok).ravel(), minlength=4) / 20000, [0.5, 0.3, 0.15, 0.05],
                               atol=0.015)
    greedy, _ = D.sample_tokens(None, small, probs, D.GenerationConfig(use_sampling=False))
    assert int(greedy[0]) == 0


@pytest.mark.parametrize("cfg", [
    D.GenerationConfig(decoding_steps=FAST),                                              # top-p 0.9
    D.GenerationConfig(decoding_steps=FAST, top_p=0.0, top_k=50, span_arrangement="stride1"),
])
def test_sampling_steps_change_only_masked_positions(models, text, cfg):
    _, lm = models
    hidden, mask = text
    T, lens = 60, [6, 0]
    prompt = np.random.RandomState(4).randint(0, CARD, (B, K, 6))
    codes, tr = D.generate_with_trace(lm, hidden, mask, config=cfg, rng=jax.random.key(5), num_frames=T,
                                      prompt=prompt, prompt_lens=lens)
    codes = np.asarray(codes)
    seq_in, seq_out = np.asarray(tr["seq_in"]), np.asarray(tr["seq_out"])
    assert ((seq_out == seq_in) | (seq_in == CARD)).all()          # only masked positions change
    assert (seq_out != CARD).all() and (seq_in == CARD).any(-1).all()
    stages = _steps_stage(cfg.decoding_steps)
    for g in range(1, len(stages)):                                 # within a stage: unmasked tokens persist
        if stages[g] == stages[g - 1]:
            assert ((seq_in[g] == seq_out[g - 1]) | (seq_in[g] == CARD)).all()
    assert ((codes >= 0) & (codes < CARD)).all()
    np.testing.assert_array_equal(codes[0, :, :6], prompt[0])      # prompt kept, every codebook
    again = np.asarray(D.generate(lm, hidden, mask, config=cfg, rng=jax.random.key(5), num_frames=T,
                                  prompt=prompt, prompt_lens=lens))
    np.testing.assert_array_equal(codes, again)                    # deterministic for a key
    other = np.asarray(D.generate(lm, hidden, mask, config=cfg, rng=jax.random.key(6), num_frames=T,
                                  prompt=prompt, prompt_lens=lens))
    assert (other != codes).any()


# ----------------------------------------------------------------------------- infill / unconditional
def test_infill_keeps_context_bit_identical(models, text):
    _, lm = models
    hidden, mask = text
    T = 60
    init = np.random.RandomState(7).randint(0, CARD, (B, K, T))
    region = np.zeros((B, T), bool)
    region[0, 10:31] = True
    region[1, 40:] = True
    cfg = D.GenerationConfig(decoding_steps=FAST)
    codes = np.asarray(D.generate(lm, hidden, mask, config=cfg, rng=jax.random.key(0), infill_mask=region,
                                  init_codes=init))
    assert codes.shape == (B, K, T)
    np.testing.assert_array_equal(codes[0][:, ~region[0]], init[0][:, ~region[0]])
    np.testing.assert_array_equal(codes[1][:, ~region[1]], init[1][:, ~region[1]])
    assert ((codes >= 0) & (codes < CARD)).all()
    assert (codes[0][:, region[0]] != init[0][:, region[0]]).mean() > 0.9
    # a suffix region is exactly a prompt continuation (same compiled program)
    gcfg = cfg.replace(use_sampling=False)
    suffix = np.broadcast_to(np.arange(T) >= 13, (B, T))
    a = D.generate(lm, hidden, mask, config=gcfg, rng=jax.random.key(0), infill_mask=suffix, init_codes=init)
    b = D.generate(lm, hidden, mask, config=gcfg, rng=jax.random.key(0), prompt=init[:, :, :13], num_frames=T)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_unconditional(models, text):
    _, lm = models
    hidden, _ = text
    cfg = D.GenerationConfig(decoding_steps=FAST, use_sampling=False)
    codes = np.asarray(D.generate(lm, None, None, config=cfg, rng=jax.random.key(0), num_frames=30, num_samples=2))
    assert codes.shape == (2, K, 30) and ((codes >= 0) & (codes < CARD)).all()
    # == the null condition through the CFG path (all-zero text mask: cond rows == null rows)
    null = np.asarray(D.generate(lm, hidden, np.zeros((B, S), np.int32), config=cfg, rng=jax.random.key(0),
                                 num_frames=30))
    np.testing.assert_array_equal(codes, null)
    sampled = D.generate(lm, None, None, config=D.GenerationConfig(decoding_steps=FAST), rng=jax.random.key(1),
                         num_frames=30)
    assert sampled.shape == (1, K, 30)


# ----------------------------------------------------------------------------- compile once
def test_compiles_once_for_new_inputs_and_weights(models, text):
    _, lm = models
    hidden, mask = text
    cfg = D.GenerationConfig(decoding_steps=(3, 2, 2, 2), top_p=0.8)
    T = 45
    D.generate(lm, hidden, mask, config=cfg, rng=jax.random.key(0), num_frames=T,
               prompt=np.zeros((B, K, 4), np.int32))
    n0 = D._decode._cache_size()
    graphdef, state = nnx.split(lm)
    lm2 = nnx.merge(graphdef, jax.tree.map(lambda x: x * 1.01, state))
    rs = np.random.RandomState(9)
    for i, (model, P) in enumerate([(lm, 9), (lm2, 4), (lm2, 17)]):
        D.generate(model, rs.randn(B, S, E).astype(np.float32), mask, config=cfg, rng=jax.random.key(i + 1),
                   num_frames=T, prompt=rs.randint(0, CARD, (B, K, P)), prompt_lens=[P, P // 2])
        D.generate(model, hidden, mask, config=cfg, rng=jax.random.key(i + 1), num_frames=T,
                   infill_mask=rs.rand(B, T) > 0.5, init_codes=rs.randint(0, CARD, (B, K, T)))
    assert D._decode._cache_size() == n0


def test_program_size_independent_of_step_counts(models, text):
    """Steps are fori_loops: the lowered program for [20, 10, 10, 10] is the one for [2, 2, 2, 2] (up to the
    schedule constants), so compile time does not grow with the step counts."""
    _, lm = models
    hidden, mask = text
    graphdef, state = nnx.split(lm)
    known = jnp.zeros((B, K, 48), jnp.int32)
    keep = jnp.zeros((B, 48), bool)
    texts = {}
    for steps in ((2, 2, 2, 2), (20, 10, 10, 10)):
        cfg = D.GenerationConfig(decoding_steps=steps)
        texts[steps] = D._decode.lower(graphdef, cfg, state, jnp.asarray(hidden), jnp.asarray(mask), known, keep,
                                       jax.random.key(0)).as_text()
    small, big = texts[(2, 2, 2, 2)], texts[(20, 10, 10, 10)]
    assert small.count("stablehlo.while") == big.count("stablehlo.while") >= 4
    assert len(big) < 1.03 * len(small)
