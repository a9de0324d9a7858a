"""decode_loop with fake models (``logits_fn``): the loop's invariants, independent of any LM."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magnet_jax.decoding import GenerationConfig, decode_loop, stage_schedule

CARD, MASK, K, L = 16, 16, 3, 3
STEPS = (5, 3, 2)


def _prefers(target):
    """A fake model that wants ``target`` [B, K, T] whatever it is shown."""
    def logits_fn(codes, stage, coef):
        del codes, coef
        return 60.0 * jax.nn.one_hot(target[:, stage], CARD)
    return logits_fn


def _hashing(target=None):
    """A fake model whose logits depend on every codebook's current tokens (and on the stage)."""
    del target
    return _hash_logits


def _hash_logits(codes, stage, coef):
    del coef
    mix = jnp.sum((codes + 1) * jnp.arange(1, codes.shape[1] + 1)[None, :, None], axis=1).astype(jnp.float32)
    v = jnp.arange(CARD, dtype=jnp.float32)
    t = jnp.arange(codes.shape[-1], dtype=jnp.float32)
    return 4.0 * jnp.sin(mix[..., None] * (v + 1) * 0.37 + t[:, None] + stage)


@functools.lru_cache(maxsize=None)
def _program(fake, config):
    """One compiled program per (fake model, config); the fake's target is an argument."""
    def run(known, keep, rng, target):
        return decode_loop(fake(target), config, known, keep, rng, mask_id=MASK, span_len=L, trace=True)
    return jax.jit(run)


def _run(fake, config, known, keep, seed=0, target=None):
    target = np.zeros_like(known) if target is None else target
    codes, tr = _program(fake, config)(jnp.asarray(known, jnp.int32), jnp.asarray(keep), jax.random.key(seed),
                                       jnp.asarray(target, jnp.int32))
    return np.asarray(codes), jax.tree.map(np.asarray, tr.to_dict())


def _inputs(T=24, B=3, seed=0):
    rs = np.random.RandomState(seed)
    known = rs.randint(0, CARD, (B, K, T))
    keep = np.zeros((B, T), bool)
    keep[0, :7] = True                       # a prompt (chunk 2 partly kept)
    keep[1, :3] = keep[1, 15:] = True        # infill of frames 3..14
    return known, keep                       # item 2: everything generated


CONFIGS = [GenerationConfig(decoding_steps=STEPS, use_sampling=False),
           GenerationConfig(decoding_steps=STEPS, top_p=0.9),
           GenerationConfig(decoding_steps=STEPS, top_p=0.0, top_k=3, span_arrangement="stride1"),
           GenerationConfig(decoding_steps=STEPS, top_p=0.0, span_scoring="prod")]


@pytest.mark.parametrize("config", CONFIGS)
def test_a_model_that_prefers_tokens_gets_them(config):
    known, keep = _inputs()
    target = np.random.RandomState(9).randint(0, CARD, known.shape)
    codes, _ = _run(_prefers, config, known, keep, target=target)
    np.testing.assert_array_equal(codes, np.where(keep[:, None], known, target))
    # a model that prefers the known tokens reproduces the whole known sequence
    codes, _ = _run(_prefers, config, known, keep, target=known)
    np.testing.assert_array_equal(codes, known)


@pytest.mark.parametrize("config", CONFIGS)
def test_kept_tokens_never_change_and_only_masked_positions_are_sampled(config):
    known, keep = _inputs()
    codes, tr = _run(_hashing, config, known, keep)
    stages = [s for s, n in enumerate(STEPS) for _ in range(n)]
    for g, s in enumerate(stages):
        np.testing.assert_array_equal(tr["seq_in"][g][keep], known[:, s][keep], err_msg=f"step {g}")
        np.testing.assert_array_equal(tr["seq_out"][g][keep], known[:, s][keep], err_msg=f"step {g}")
        assert ((tr["seq_out"][g] == tr["seq_in"][g]) | (tr["seq_in"][g] == MASK)).all()
        assert (tr["seq_out"][g] != MASK).all()
    np.testing.assert_array_equal(codes[:, :, :][np.broadcast_to(keep[:, None], codes.shape)],
                                  known[np.broadcast_to(keep[:, None], known.shape)])
    assert ((codes >= 0) & (codes < CARD)).all()


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.span_arrangement == "nonoverlap"])
def test_each_stage_masks_everything_then_a_shrinking_subset(config):
    """Step 0 of a stage masks every generated unit; later steps re-mask only units just resampled, so the
    masked sets are nested and each unit is re-masked at most once per step (at most n times a stage)."""
    known, keep = _inputs()
    _, tr = _run(_hashing, config, known, keep)
    g = 0
    for n in STEPS:
        masked = tr["seq_in"][g:g + n] == MASK                               # [n, B, T]
        np.testing.assert_array_equal(masked[0], ~keep)
        for i in range(1, n):
            assert not (masked[i] & ~masked[i - 1]).any(), f"step {g + i} re-masks a token not just sampled"
        assert masked.sum(0).max() <= n
        # item 2 (no kept token): exactly num_masked chunks of L tokens per step, as the schedule says
        sch = stage_schedule(n, config, keep.shape[1] // L)
        np.testing.assert_array_equal(tr["num_masked"][g:g + n, 2], sch["num_masked"])
        np.testing.assert_array_equal(masked[:, 2].sum(-1), L * sch["num_masked"])
        np.testing.assert_array_equal(tr["cfg_coef"][g:g + n], sch["cfg_coef"])
        np.testing.assert_array_equal(tr["temperature"][g:g + n], sch["temperature"])
        g += n


def test_stages_run_coarse_to_fine_and_see_the_schedule():
    """The model sees finished codebooks below the stage, masks above it (kept tokens on every codebook)."""
    known, keep = _inputs()
    seen = []

    def spy(target):
        def logits_fn(codes, stage, coef):
            jax.debug.callback(lambda c, k: seen.append((stage, np.asarray(c), float(k))), codes, coef)
            return _hash_logits(codes, stage, coef)
        return logits_fn

    config = GenerationConfig(decoding_steps=STEPS, top_p=0.9)
    _run(spy, config, known, keep)
    assert [s for s, _, _ in seen] == [s for s, n in enumerate(STEPS) for _ in range(n)]
    coefs = np.concatenate([stage_schedule(n, config)["cfg_coef"] for n in STEPS])
    np.testing.assert_array_equal(np.float32([k for _, _, k in seen]), coefs)
    kept3 = np.broadcast_to(keep[:, None], known.shape)
    for stage, codes, _ in seen:
        assert (codes[:, :stage] != MASK).all()
        above = codes[:, stage + 1:]
        np.testing.assert_array_equal(above, np.where(kept3[:, stage + 1:], known[:, stage + 1:], MASK))


def test_sampling_follows_the_key():
    known, keep = _inputs()
    config = GenerationConfig(decoding_steps=STEPS, top_p=0.0)
    a, _ = _run(_hashing, config, known, keep, seed=1)
    b, _ = _run(_hashing, config, known, keep, seed=1)
    c, _ = _run(_hashing, config, known, keep, seed=2)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


@pytest.mark.parametrize("arrangement", ["nonoverlap", "stride1"])
def test_choice_temperature_changes_which_tokens_are_kept_not_the_invariants(arrangement):
    """choice_temp > 0 (MaskGIT's noisy re-masking) re-ranks the units: the same key gives other codes, the
    same key twice the same codes; the first step still masks everything and kept tokens stay kept."""
    known, keep = _inputs()
    base = GenerationConfig(decoding_steps=STEPS, top_p=0.0, span_arrangement=arrangement)
    noisy = base.replace(choice_temp=4.0)
    a, tr_a = _run(_hashing, base, known, keep, seed=3)
    b, tr = _run(_hashing, noisy, known, keep, seed=3)
    c, _ = _run(_hashing, noisy, known, keep, seed=3)
    np.testing.assert_array_equal(b, c)
    assert (a != b).any()
    kept3 = np.broadcast_to(keep[:, None], known.shape)
    np.testing.assert_array_equal(b[kept3], known[kept3])
    np.testing.assert_array_equal(tr["seq_in"][0] == MASK, ~keep)
    # at step 1 the re-masked tokens are no longer exactly the least confident ones: the noise picked others
    assert ((tr_a["seq_in"][1] == MASK) != (tr["seq_in"][1] == MASK)).any()


@pytest.mark.parametrize("config", CONFIGS)
def test_decoding_from_a_later_stage_over_a_full_decodes_first_codebooks_gives_that_decode(config):
    """first_stage=s keeps codebooks < s as given and decodes the rest with a full decode's step keys: given a
    full decode's own first codebooks, it reproduces that decode exactly."""
    known, _ = _inputs()
    none = np.zeros(known.shape[::2], bool)
    full, _ = _run(_hashing, config, known, none, seed=5)
    for first in (1, 2):
        out = decode_loop(_hash_logits, config, jnp.asarray(full, jnp.int32), jnp.asarray(none), jax.random.key(5),
                          mask_id=MASK, span_len=L, first_stage=first)[0]
        np.testing.assert_array_equal(np.asarray(out), full)
        # other given codebooks stay as given, and the later ones follow them
        given = full.copy()
        given[:, :first] = (full[:, :first] + 1) % CARD
        out = np.asarray(decode_loop(_hash_logits, config, jnp.asarray(given, jnp.int32), jnp.asarray(none),
                                     jax.random.key(5), mask_id=MASK, span_len=L, first_stage=first)[0])
        np.testing.assert_array_equal(out[:, :first], given[:, :first])
        assert (out[:, first:] != full[:, first:]).any()


def test_loop_refuses_lengths_the_units_cannot_split():
    with pytest.raises(ValueError, match="divisible"):
        decode_loop(_hash_logits, GenerationConfig(decoding_steps=STEPS), jnp.zeros((1, K, 10), jnp.int32),
                    jnp.zeros((1, 10), bool), jax.random.key(0), mask_id=MASK, span_len=L)
    with pytest.raises(ValueError, match="codebooks"):
        decode_loop(_hash_logits, GenerationConfig(decoding_steps=(2, 2)), jnp.zeros((1, K, 9), jnp.int32),
                    jnp.zeros((1, 9), bool), jax.random.key(0), mask_id=MASK, span_len=L)
