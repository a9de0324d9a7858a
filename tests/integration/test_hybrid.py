"""Hybrid-MAGNeT as one model: the objective (AR CE before the prompt step, span-masked NAR CE after it), a
tiny model learning a toy set, generation (AR prefix = a greedy causal run; the rest by MAGNeT decoding with
the prefix as a prompt, inputs as in training) and the pipeline."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from magnet_jax.decoding import GenerationConfig
from magnet_jax.decoding.config import MusicGenGenerationConfig
from magnet_jax.decoding.hybrid import generate, hybrid_logits_fn
from magnet_jax.model import delay_pattern as pattern
from magnet_jax.model.hybrid import HybridMagnetConfig, HybridMagnetLM
from magnet_jax.objectives import hybrid as H

CFG = HybridMagnetConfig(dim=32, num_heads=2, num_layers=2, text_dim=16, card=16, segment_duration=0.3)  # T = 15
B, K, T, V = 2, 4, 15, 16


@pytest.fixture(scope="module")
def lm():
    return HybridMagnetLM(CFG, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def text():
    th = jax.random.normal(jax.random.key(1), (B, 3, 16))
    return th, jnp.asarray([[1, 1, 1], [1, 1, 0]], jnp.int32)


def _ce(logits, targets):
    logp = jax.nn.log_softmax(np.asarray(logits, np.float64), -1)
    return -np.take_along_axis(np.asarray(logp), np.asarray(targets)[..., None], -1)[..., 0]


def test_objective_on_a_constructed_case(lm, text):
    th, tm = text
    codes = jax.random.randint(jax.random.key(2), (B, K, T), 0, V)
    pad = jnp.ones((B, T), bool).at[1, -2:].set(False)
    P, stage = np.array([6, 9]), np.array([1, 3])
    kw = dict(stage=jnp.asarray(stage), prompt_step=jnp.asarray(P), mask_rate=0.5)
    batch = H.prepare_batch(codes, pad, tm, jax.random.key(3), num_codebooks=K, mask_id=V, span_len=3, **kw)
    inp, c = np.asarray(batch["inputs"]), np.asarray(codes)
    t = np.arange(T)
    for b in range(B):
        s = stage[b]
        spans = (inp[b, s] == V)
        assert spans.any() and not spans[t < P[b] - s].any()              # spans only in the stage's suffix
        for k in range(K):
            prefix = t < P[b] - k
            np.testing.assert_array_equal(inp[b, k, prefix], c[b, k, prefix])   # the prefix is ground truth
            if k < s:
                np.testing.assert_array_equal(inp[b, k], c[b, k])
            elif k > s:
                assert (inp[b, k, ~prefix] == V).all()
    # the loss: token means of the two parts, pooled
    logits = np.asarray(lm(batch["inputs"], th, tm, batch["prompt_step"], batch["stage"]))
    ce = _ce(logits, c)
    k3, t3 = np.arange(K)[None, :, None], t[None, None, :]
    prefix = t3 < P[:, None, None] - k3
    valid = np.asarray(pad)[:, None, :]
    stage_masked = (k3 == stage[:, None, None]) & (inp == V) & ~prefix
    ar, nar = prefix & valid, stage_masked & valid
    loss, m = H.hybrid_loss(lm, codes, pad, th, tm, jax.random.key(3), **kw)
    np.testing.assert_allclose(m["ar_ce"], ce[ar].mean(), rtol=1e-5)
    np.testing.assert_allclose(m["nar_ce"], ce[nar].mean(), rtol=1e-5)
    np.testing.assert_allclose(loss, ce[ar | nar].mean(), rtol=1e-5)
    assert int(m["num_ar_tokens"]) == ar.sum() and int(m["num_nar_tokens"]) == nar.sum()
    # AR CE before the prompt step = MusicGen's teacher-forced causal CE on those tokens (delay pattern)
    seq = pattern.build_sequence(codes, CFG.delays, V)
    causal = np.asarray(pattern.revert_logits(lm.causal(seq, th, tm), CFG.delays, T))
    np.testing.assert_allclose(logits[ar], causal[ar], atol=1e-5)
    # ... and it does not see the suffix: other suffix tokens leave the prefix logits unchanged
    other = jnp.where(jnp.asarray(prefix), batch["inputs"], (batch["inputs"] + 5) % V)
    np.testing.assert_allclose(np.asarray(lm(other, th, tm, batch["prompt_step"], batch["stage"]))[ar],
                               logits[ar], atol=1e-5)


def test_prepare_batch_samples_per_sample_draws():
    codes = jnp.zeros((64, K, 30), jnp.int32)
    b = H.prepare_batch(codes, jnp.ones((64, 30), bool), jnp.ones((64, 2)), jax.random.key(0), num_codebooks=K,
                        mask_id=V, span_len=3)
    assert len(set(np.asarray(b["stage"]).tolist())) == K and np.asarray(b["prompt_step"]).max() < 30
    assert len(set(np.asarray(b["prompt_step"]).tolist())) > 8
    assert np.asarray(b["nar_weights"]).sum(axis=(1, 2)).min() >= 1          # at least one span per sample
    lut = H.masking.span_lut_table(30, 3)
    assert lut.shape == (31, 101) and lut[30].tolist() == H.masking.span_lut(30, 3).tolist()


def test_tiny_hybrid_learns_a_toy_set(text):
    th, tm = text
    data = jax.random.randint(jax.random.key(5), (2, K, T), 0, V)            # two memorisable clips
    pad = jnp.ones((2, T), bool)
    model = HybridMagnetLM(CFG, rngs=nnx.Rngs(1))
    graphdef, params = nnx.split(model)
    tx = optax.adam(3e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, key):
        def loss_fn(p):
            return H.hybrid_loss(nnx.merge(graphdef, p), data, pad, th, tm, key)[0]
        loss, g = jax.value_and_grad(loss_fn)(params)
        up, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, up), opt, loss

    losses = []
    for i in range(40):
        params, opt, loss = step(params, opt, jax.random.key(100 + i))
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def _greedy_causal_prefix(lm, th, tm, frames, cfg_coef=3.0):
    """The AR prefix by full causal recompute, greedy, CFG as MusicGen ([cond; null] rows)."""
    S = pattern.num_steps(frames, CFG.delays)
    valid = jnp.asarray(pattern.valid_mask(frames, CFG.delays))
    th2, tm2 = jnp.concatenate([th, jnp.zeros_like(th)]), jnp.concatenate([tm, jnp.zeros_like(tm)])
    graphdef, state = nnx.split(lm)

    @jax.jit
    def full(st, seq):   # the whole causal sequence each step (one shape): row s-1 sees only steps < s
        both = nnx.merge(graphdef, st).causal(jnp.concatenate([seq, seq]), th2, tm2)
        return both[B:] + (both[:B] - both[B:]) * cfg_coef

    seq = jnp.full((B, K, S), V, jnp.int32)
    for s in range(1, S):
        logits = full(state, seq)[:, :, s - 1]
        seq = seq.at[:, :, s].set(jnp.where(valid[:, s], jnp.argmax(logits, -1), V))
    return np.asarray(pattern.revert_sequence(seq, CFG.delays, frames))


def test_generation_prefix_is_the_greedy_ar_run_and_kept(lm, text):
    th, tm = text
    P = 6
    cfg = GenerationConfig(decoding_steps=(3, 2, 2, 2), use_sampling=False)
    out = np.asarray(generate(lm, th, tm, config=cfg, ar_config=MusicGenGenerationConfig(use_sampling=False),
                              prefix_frames=P, rng=0, num_frames=T))
    assert out.shape == (B, K, T) and (out >= 0).all() and (out < V).all()
    np.testing.assert_array_equal(out[..., :P], _greedy_causal_prefix(lm, th, tm, P))
    longer = np.asarray(generate(lm, th, tm, config=cfg, ar_config=MusicGenGenerationConfig(use_sampling=False),
                                 prefix_frames=9, rng=0, num_frames=T))
    np.testing.assert_array_equal(longer[..., :9], _greedy_causal_prefix(lm, th, tm, 9))
    assert (longer[..., 9:] != out[..., 9:]).any()      # a later prompt step changes the rest
    sampled = np.asarray(generate(lm, None, None, prefix_frames=3, rng=1, num_frames=T, num_samples=3,
                                  config=GenerationConfig(decoding_steps=(3, 2, 2, 2))))
    assert sampled.shape == (3, K, T)


def test_decoding_model_call_matches_the_training_input(lm, text):
    """At stage s the decoder hides codebooks > s from frame P - k on, exactly as the training input."""
    th, tm = text
    codes = jax.random.randint(jax.random.key(7), (B, K, T), 0, V)
    P = jnp.asarray([5, 8])
    for s in range(K):
        batch = H.prepare_batch(codes, jnp.ones((B, T), bool), tm, jax.random.key(s), num_codebooks=K, mask_id=V,
                                span_len=3, stage=s, prompt_step=P, mask_rate=0.6)
        graphdef, state = nnx.split(lm)
        dec_in = codes.at[:, s].set(batch["inputs"][:, s])                    # the stage row masked, others known
        got = jax.jit(lambda st, x: hybrid_logits_fn(graphdef, st, th, tm, P)(x, s, jnp.float32(1.0)))(
            state, dec_in)                                                    # coef 1: the conditional logits
        want = lm(batch["inputs"], th, tm, P, s)[:, s]
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_bad_prefix_is_refused(lm, text):
    th, tm = text
    with pytest.raises(ValueError, match="prefix_frames must be an integer in"):
        generate(lm, th, tm, prefix_frames=15, num_frames=T, config=GenerationConfig(decoding_steps=(3, 2, 2, 2)))


def test_pipeline_from_config():
    from magnet_jax.pipelines.hybrid import HybridMagnetPipeline
    from magnet_jax.pipelines.magnet import MagnetPipeline
    pipe = MagnetPipeline.from_config("hybrid_tiny")
    assert isinstance(pipe, HybridMagnetPipeline) and isinstance(pipe.lm, HybridMagnetLM)
    codes = np.asarray(pipe.generate_codes(["a piano"], duration=0.6, prefix_seconds=0.2, seed=0,
                                           decoding_steps=(3, 2, 2, 2)))
    assert codes.shape == (1, 4, 30)
    with pytest.raises(ValueError, match="not shorter than"):
        pipe.generate_codes(["x"], duration=0.3, prefix_seconds=0.5)
    with pytest.raises(ValueError, match="audio prompts"):
        pipe.generate_codes(["x"], duration=0.6, prompt=codes[..., :5])


def test_a_magnet_checkpoint_initialises_a_hybrid_of_its_architecture(tmp_path):
    """``init_from`` a MAGNeT export into a Hybrid-MAGNeT config: the same parameters, value for value; a
    different architecture is still refused."""
    from magnet_jax import sharding
    from magnet_jax.convert import save_lm_safetensors
    from magnet_jax.convert.checkpoint import flat_params
    from magnet_jax.model import MagnetConfig, MagnetLM
    from magnet_jax.training.loop import initial_model

    base = MagnetConfig(**{k: v for k, v in CFG.to_dict().items() if k != "delays"})
    magnet = MagnetLM(base, rngs=nnx.Rngs(3))
    save_lm_safetensors(magnet, tmp_path / "magnet")
    mesh = sharding.make_mesh(data=-1)
    _, params, _ = initial_model(str(tmp_path / "magnet"), 0, CFG, mesh)
    want = flat_params(magnet)
    got = {".".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
           for path, v in jax.tree_util.tree_leaves_with_path(params)}
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(ValueError, match="does not match config.model"):
        initial_model(str(tmp_path / "magnet"), 0, CFG.replace(num_layers=3), mesh)
