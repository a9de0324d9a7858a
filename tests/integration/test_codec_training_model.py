"""The trainable codec (magnet_jax.codec.training_model / rvq_train), without the reference stack:
weight norm as a parametrisation, the trainer contract (state split, updated buffers, STE gradients,
quantizer dropout), dead-code replacement, and the export to the inference Encodec."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from magnet_jax.codec import (
    CodebookState,
    CodecConfig,
    RVQTrainConfig,
    SeanetConfig,
    codec_train_forward,
    export_inference_codec,
    init_trainable_codec,
)
from magnet_jax.codec.rvq_train import TrainableRVQ
from magnet_jax.codec.seanet import Conv1d, ConvTranspose1d

SR = 8000


def _cfg(**side_kw):
    kw = dict(channels=1, dimension=8, n_filters=4, ratios=(4, 2), lstm=1)
    kw.update(side_kw)
    side = SeanetConfig(**kw)
    return CodecConfig(sample_rate=SR, encoder=side, decoder=side, total_codebooks=3, num_codebooks=3, bins=16)


def _wav(channels=1, n=803, b=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f = rng.uniform(100, 1500, (b, channels, 1))
    return (0.4 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal((b, channels, n))).astype(np.float32)


_FWD = jax.jit(codec_train_forward, static_argnames=("train", "quantizer_dropout"))


def _split(cfg, seed=0, **rvq):
    return nnx.split(init_trainable_codec(cfg, jax.random.key(seed), rvq=RVQTrainConfig(**rvq)),
                     nnx.Param, CodebookState)


def test_weight_norm_is_a_parametrisation():
    model = init_trainable_codec(_cfg(), jax.random.key(0))
    convs = [m for _, m in nnx.iter_graph(model) if isinstance(m, (Conv1d, ConvTranspose1d))]
    assert convs and all(c.weight_norm and not hasattr(c, "weight") for c in convs)
    transposed = [c for c in convs if isinstance(c, ConvTranspose1d)]
    assert len(transposed) == 2
    for c in [convs[0], convs[-1], *transposed]:  # both layouts (norm over Cin*K / over Cout*K)
        v, g = np.asarray(c.v[...]), np.asarray(c.g[...])
        np.testing.assert_allclose(np.asarray(c.kernel()), v, rtol=1e-5, atol=1e-7)  # torch init: g = ||v||
        c.g[...] = 2 * c.g[...]
        axes = c.norm_axes
        want = 2 * g * v / np.sqrt((v ** 2).sum(axis=axes, keepdims=True))
        np.testing.assert_allclose(np.asarray(c.kernel()), want, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(c.kernel()), 2 * v, rtol=1e-5, atol=1e-7)
        # scaling v does not change the weight (direction only)
        c.v[...] = 3 * c.v[...]
        np.testing.assert_allclose(np.asarray(c.kernel()), 2 * v, rtol=1e-5, atol=1e-7)


def test_contract_split_and_state_update():
    cfg = _cfg()
    g, p, cb = _split(cfg, threshold_ema_dead_code=0.0)
    assert set(nnx.to_pure_dict(cb)["quantizer"]) == {"embed", "cluster_size", "embed_avg", "inited"}
    assert not jax.tree.leaves(nnx.to_pure_dict(p).get("quantizer", {}))  # no codebook is a Param
    wav = _wav()
    recon, aux = _FWD(g, p, cb, wav, jax.random.key(1), train=False, quantizer_dropout=False)
    assert recon.shape == wav.shape and aux["codes"].dtype == jnp.int32 and aux["codes"].shape == (3, 3, 101)
    for a, b in zip(jax.tree.leaves(aux["codebook_state"]), jax.tree.leaves(cb)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # eval: buffers untouched
    assert float(aux["commit_loss"]) == 0.0
    recon, aux = _FWD(g, p, cb, wav, jax.random.key(1), train=True, quantizer_dropout=False)
    new = nnx.to_pure_dict(aux["codebook_state"])["quantizer"]
    np.testing.assert_array_equal(np.asarray(new["inited"]), np.ones(3))  # k-means on the first batch
    assert int(aux["n_q"]) == 3 and float(aux["commit_loss"]) > 0
    ppl = np.asarray(aux["perplexity"])
    assert ppl.shape == (3,) and np.all(ppl > 4) and np.all(ppl <= 16)
    # cluster sizes: EMA of the counts after the k-means counts (sum is preserved by both)
    np.testing.assert_allclose(np.asarray(new["cluster_size"]).sum(1), 3 * 101, rtol=1e-4)


def test_straight_through_gradients_reach_the_encoder():
    cfg = _cfg()
    g, p, cb = _split(cfg)
    wav = jnp.asarray(_wav())
    _, aux = _FWD(g, p, cb, wav, jax.random.key(0), train=True, quantizer_dropout=False)
    cb = aux["codebook_state"]

    def loss(p, commit_only):
        recon, aux = codec_train_forward(g, p, cb, wav, jax.random.key(1), train=True, quantizer_dropout=False)
        return aux["commit_loss"] if commit_only else jnp.mean(jnp.abs(recon - wav))

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    for commit_only in (False, True):
        grads = nnx.to_pure_dict(grad(p, commit_only))
        enc = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(grads["encoder"]))
        dec = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(grads["decoder"]))
        assert enc > 0  # through the STE (reconstruction) or the commitment loss
        assert (dec > 0) != commit_only  # the commitment loss does not touch the decoder
        g0 = grads["encoder"]["layers"][0]
        assert float(jnp.abs(g0["g"]).sum()) > 0 and float(jnp.abs(g0["v"]).sum()) > 0


def test_quantizer_dropout_uses_fewer_levels_and_leaves_the_rest():
    cfg = _cfg()
    g, p, cb = _split(cfg)
    wav = _wav()
    seen = set()
    for seed in range(20):
        recon, aux = _FWD(g, p, cb, wav, jax.random.key(seed), train=True, quantizer_dropout=True)
        n_q = int(aux["n_q"])
        seen.add(n_q)
        ppl = np.asarray(aux["perplexity"])
        assert np.all(ppl[:n_q] > 1) and np.all(ppl[n_q:] == 0)
        inited = np.asarray(nnx.to_pure_dict(aux["codebook_state"])["quantizer"]["inited"])
        np.testing.assert_array_equal(inited, (np.arange(3) < n_q).astype(np.float32))
    assert seen == {1, 2, 3}


def test_dead_codes_take_batch_vectors():
    rvq = TrainableRVQ(4, 8, 1, RVQTrainConfig(threshold_ema_dead_code=2.0))
    rng = np.random.default_rng(0)
    embed = rng.standard_normal((1, 8, 4)).astype(np.float32)
    cluster = np.full((1, 8), 5.0, np.float32)
    cluster[0, [2, 5]] = 0.5  # two dead codes
    rvq.embed[...], rvq.embed_avg[...] = embed, embed * cluster[..., None]
    rvq.cluster_size[...], rvq.inited[...] = cluster, np.ones((1,), np.float32)
    x = jnp.asarray(rng.standard_normal((2, 30, 4)).astype(np.float32))
    *_, buf = rvq(x, 1, jax.random.key(3), train=True)
    new_embed = np.asarray(buf["embed"][0])
    rows = np.asarray(x).reshape(-1, 4)
    for code in (2, 5):  # replaced by a batch vector, and that survives the EMA bookkeeping
        assert np.min(np.abs(rows - new_embed[code]).max(1)) < 1e-6
        np.testing.assert_allclose(np.asarray(buf["embed_avg"][0, code]) / np.asarray(buf["cluster_size"][0, code]),
                                   new_embed[code], rtol=1e-5)
    alive = [c for c in range(8) if c not in (2, 5)]
    assert not any(np.min(np.abs(rows - new_embed[c]).max(1)) < 1e-6 for c in alive)


@pytest.mark.parametrize("side_kw", [dict(), dict(causal=True, channels=2, true_skip=False, lstm=0),
                                     dict(norm="time_group_norm", disable_norm_outer_blocks=1, n_residual_layers=2)])
def test_export_matches_the_training_forward(side_kw):
    cfg = _cfg(**side_kw)
    g, p, cb = _split(cfg)
    wav = _wav(cfg.channels)
    _, aux = _FWD(g, p, cb, wav, jax.random.key(0), train=True, quantizer_dropout=False)
    cb = aux["codebook_state"]
    recon, aux = _FWD(g, p, cb, wav, jax.random.key(0), train=False, quantizer_dropout=False)
    codec = export_inference_codec(g, p, cb)
    codes = np.asarray(codec.encode(wav, chunk_seconds=None))
    np.testing.assert_array_equal(codes, np.asarray(aux["codes"]))
    assert len(np.unique(codes)) > 3
    audio = np.asarray(codec.decode(codes, chunk_seconds=None))[..., : wav.shape[-1]]
    np.testing.assert_allclose(audio, np.asarray(recon), atol=1e-5)
