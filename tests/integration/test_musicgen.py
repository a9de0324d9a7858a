"""MusicGen LM and decoding without torch: delay pattern, KV cache == full recompute, greedy decode ==
a naive loop, prompts, CFG modes, the objective."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.decoding.musicgen import generate
from magnet_jax.model import MusicGenConfig, MusicGenLM
from magnet_jax.model import delay_pattern as pattern

CFG = MusicGenConfig(dim=32, num_heads=2, num_layers=2, text_dim=16, card=64, segment_duration=0.4)
GREEDY = MusicGenGenerationConfig(use_sampling=False)


@pytest.fixture(scope="module")
def lm():
    return MusicGenLM(CFG, rngs=nnx.Rngs(0))


def _jit(lm, method):
    g, st = nnx.split(lm)
    return jax.jit(lambda st, *a: getattr(nnx.merge(g, st), method)(*a), static_argnums=()), st


def _text(B=2, S=5, seed=1):
    h = jax.random.normal(jax.random.PRNGKey(seed), (B, S, CFG.text_dim))
    m = jnp.ones((B, S), jnp.int32).at[1, 3:].set(0)
    return h, m


def test_delay_pattern_layout():
    codes = jnp.arange(1, 13).reshape(1, 3, 4)
    seq = np.asarray(pattern.build_sequence(codes, (0, 1, 2), 99))
    np.testing.assert_array_equal(seq[0], [[99, 1, 2, 3, 4, 99, 99],
                                           [99, 99, 5, 6, 7, 8, 99],
                                           [99, 99, 99, 9, 10, 11, 12]])
    np.testing.assert_array_equal(np.asarray(pattern.revert_sequence(jnp.asarray(seq), (0, 1, 2), 4)),
                                  np.asarray(codes))


@pytest.mark.parametrize("scan_layers", [True, False])
def test_kv_cached_decode_equals_full_recompute(lm, scan_layers):
    """Also with the layer loop (``scan_layers=False``) in the decode, against the scanned full recompute."""
    full_lm = lm
    if not scan_layers:
        lm = MusicGenLM(CFG.replace(scan_layers=False), rngs=nnx.Rngs(0))
        nnx.update(lm, nnx.state(full_lm))
    h, m = _text()
    seq = jax.random.randint(jax.random.PRNGKey(0), (2, CFG.n_q, 17), 0, CFG.card + 1)
    full = full_lm(seq, h, m)
    cond = lm.project_text(h, m)
    ckv, km = lm.cross_keys_values(cond), lm.text_key_mask(m)
    cache = lm.init_cache(2, 17)
    decode, st = _jit(lm, "decode")
    first, cache = decode(st, seq[:, :, :6], jnp.int32(0), cache, ckv, km)
    outs = [first]
    for p in range(6, 17):
        out, cache = decode(st, seq[:, :, p:p + 1], jnp.int32(p), cache, ckv, km)
        outs.append(out)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(outs, 2)), np.asarray(full), atol=2e-5)
    # causal: changing step 10 changes nothing before it
    other = full_lm(seq.at[:, :, 10].set(3), h, m)
    assert np.abs(np.asarray(other - full))[:, :, :10].max() == 0
    assert np.abs(np.asarray(other - full))[:, :, 10].max() > 0


def _naive_greedy(lm, h, m, T, prompt, coef):
    """Full recompute at every step, CFG as 2B, audiocraft's generate loop in Python."""
    d = CFG.delays
    B = h.shape[0]
    P = prompt.shape[-1]
    gen = np.full((B, CFG.n_q, T), -1)
    gen[:, :, :P] = prompt
    seq = np.array(pattern.build_sequence(jnp.asarray(gen), d, CFG.mask_id))
    h2, m2 = jnp.concatenate([h, 0 * h]), jnp.concatenate([m, 0 * m])
    forward, st = _jit(lm, "__call__")
    for s in range(P + 1, seq.shape[-1]):
        x = jnp.asarray(np.where(np.arange(seq.shape[-1]) < s, seq, 0))   # causal: steps >= s are unseen
        logits = forward(st, jnp.concatenate([x, x]), h2, m2)[:, :, s - 1]
        logits = logits[B:] + (logits[:B] - logits[B:]) * coef
        tok = np.asarray(jnp.argmax(logits, -1))
        seq[:, :, s] = np.where(seq[:, :, s] == -1, tok, seq[:, :, s])
    return np.asarray(pattern.revert_sequence(jnp.asarray(seq), d, T))


@pytest.mark.parametrize("P", [0, 4])
def test_greedy_generate_equals_naive_recompute(lm, P):
    h, m = _text()
    T = 12
    prompt = np.asarray(jax.random.randint(jax.random.PRNGKey(5), (2, CFG.n_q, P), 0, CFG.card))
    want = _naive_greedy(lm, h, m, T, prompt, GREEDY.cfg_coef)
    got = np.asarray(generate(lm, h, m, config=GREEDY, num_frames=T, prompt=prompt if P else None))
    assert got.shape == (2, CFG.n_q, T)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[:, :, :P], prompt)
    two = np.asarray(generate(lm, h, m, config=GREEDY.replace(two_step_cfg=True), num_frames=T,
                              prompt=prompt if P else None))
    np.testing.assert_array_equal(two, want)


def test_sampling_is_seeded_and_in_range(lm):
    h, m = _text()
    cfg = MusicGenGenerationConfig(top_k=5)
    a = np.asarray(generate(lm, h, m, config=cfg, rng=jax.random.PRNGKey(1), num_frames=10))
    b = np.asarray(generate(lm, h, m, config=cfg, rng=jax.random.PRNGKey(1), num_frames=10))
    c = np.asarray(generate(lm, h, m, config=cfg.replace(top_p=0.9), rng=jax.random.PRNGKey(2), num_frames=10))
    np.testing.assert_array_equal(a, b)
    assert (a >= 0).all() and (a < CFG.card).all() and (c < CFG.card).all()
    assert not np.array_equal(a, np.asarray(generate(lm, h, m, config=GREEDY, num_frames=10)))


def test_compile_size_independent_of_steps(lm):
    h, m = _text()
    from magnet_jax.decoding.musicgen import _generate
    g, s = nnx.split(lm)
    sizes = [_generate.lower(g, s, h, m, jnp.zeros((2, CFG.n_q, 0), jnp.int32), jax.random.PRNGKey(0),
                             None, config=GREEDY, frames=T).as_text().count("\n") for T in (8, 40)]
    assert abs(sizes[0] - sizes[1]) <= 4, sizes


def test_bad_prompt_raises(lm):
    h, m = _text()
    with pytest.raises(ValueError, match="not shorter"):
        generate(lm, h, m, config=GREEDY, num_frames=4, prompt=np.zeros((2, CFG.n_q, 4), np.int32))
    with pytest.raises(ValueError, match="delays"):
        MusicGenConfig(n_q=4, delays=(0, 1))


def test_objective_matches_a_direct_computation(lm):
    from magnet_jax.objectives.musicgen import musicgen_loss
    h, m = _text()
    T = 9
    codes = jax.random.randint(jax.random.PRNGKey(3), (2, CFG.n_q, T), 0, CFG.card)
    pad = jnp.ones((2, T), bool).at[1, 6:].set(False)
    loss, aux = musicgen_loss(lm, codes, h, m, padding_mask=pad)
    # direct: the logits at step s of the delayed sequence predict step s + 1
    seq = np.asarray(pattern.build_sequence(codes, CFG.delays, CFG.mask_id))
    logp = np.asarray(jax.nn.log_softmax(lm(jnp.asarray(seq), h, m), -1))
    per_k = []
    for k, d in enumerate(CFG.delays):
        terms = [-logp[b, k, t + d, int(codes[b, k, t])] for b in range(2) for t in range(T)
                 if t + d < T and bool(pad[b, t])]
        per_k.append(np.mean(terms))
    np.testing.assert_allclose(np.asarray(aux["ce_per_codebook"]), per_k, rtol=1e-5)
    np.testing.assert_allclose(float(loss), np.mean(per_k), rtol=1e-5)
    # CFG dropout of the whole batch = training on null text
    dropped, _ = musicgen_loss(lm, codes, h, m, padding_mask=pad, rng=jax.random.PRNGKey(0), cfg_dropout=1.0)
    null, _ = musicgen_loss(lm, codes, 0 * h, 0 * m, padding_mask=pad)
    np.testing.assert_allclose(float(dropped), float(null), rtol=1e-6)
