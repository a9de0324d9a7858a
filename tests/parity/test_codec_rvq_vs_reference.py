"""RVQ training vs audiocraft 1.3.0's ``ResidualVectorQuantization`` (the real torch module): k-means,
k-means initialisation on the first batch, the EMA step, codes, straight-through output, commitment
loss and its gradient, on the same random inputs and codebooks."""
# ruff: noqa: I001  (the reference shim must be imported before audiocraft)
import numpy as np
import pytest

import tests.reference.shim  # noqa: F401  (before audiocraft)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from audiocraft.quantization import core_vq  # noqa: E402

from magnet_jax.codec import rvq_train  # noqa: E402
from magnet_jax.codec.rvq_train import RVQTrainConfig, TrainableRVQ, kmeans_from  # noqa: E402

B, T, D, BINS, K = 3, 40, 8, 16, 3


def _x(seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((6, D))
    x = centers[rng.integers(0, 6, (B, T))] + 0.3 * rng.standard_normal((B, T, D))
    return x.astype(np.float32)


def _ref(threshold=0.0, kmeans_iters=5):
    return core_vq.ResidualVectorQuantization(
        num_quantizers=K, dim=D, codebook_size=BINS, decay=0.99, epsilon=1e-5, kmeans_init=True,
        kmeans_iters=kmeans_iters, threshold_ema_dead_code=threshold, channels_last=False).train()


def _ours(threshold=0.0, kmeans_iters=5):
    return TrainableRVQ(D, BINS, K, RVQTrainConfig(kmeans_iters=kmeans_iters, threshold_ema_dead_code=threshold))


def test_kmeans_matches_audiocraft(monkeypatch):
    rng = np.random.default_rng(1)
    samples = rng.standard_normal((200, D)).astype(np.float32)
    init = samples[rng.permutation(200)[:BINS]]
    init[3] = 50.0  # a mean far from every sample: an empty cluster keeps its mean
    monkeypatch.setattr(core_vq, "sample_vectors", lambda s, n: torch.from_numpy(init.copy()))
    ref_means, ref_bins = core_vq.kmeans(torch.from_numpy(samples), BINS, 7)
    means, bins = kmeans_from(jnp.asarray(samples), jnp.asarray(init), 7)
    np.testing.assert_allclose(np.asarray(means), ref_means.numpy(), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(bins), ref_bins.numpy().astype(np.float32))
    assert ref_bins[3] == 0 and np.allclose(np.asarray(means)[3], 50.0)


def _set_codebooks(ref, ours, seed):
    rng = np.random.default_rng(seed)
    embed = rng.standard_normal((K, BINS, D)).astype(np.float32)
    cluster = rng.uniform(3, 8, (K, BINS)).astype(np.float32)
    avg = (embed * cluster[..., None]).astype(np.float32)
    for q, layer in enumerate(ref.layers):
        cb = layer._codebook
        cb.embed.copy_(torch.from_numpy(embed[q]))
        cb.embed_avg.copy_(torch.from_numpy(avg[q]))
        cb.cluster_size.copy_(torch.from_numpy(cluster[q]))
        cb.inited.fill_(1.0)
    ours.embed[...] = jnp.asarray(embed)
    ours.embed_avg[...] = jnp.asarray(avg)
    ours.cluster_size[...] = jnp.asarray(cluster)
    ours.inited[...] = jnp.ones((K,))


def _run_ref(ref, x, n_q=K):
    xt = torch.from_numpy(x.transpose(0, 2, 1).copy()).requires_grad_(True)  # [B, D, T]
    out, codes, losses = ref(xt, n_q=n_q)
    w = torch.from_numpy(np.random.default_rng(9).standard_normal(out.shape).astype(np.float32))
    ((out * w).sum() + losses.mean() * 10).backward()
    return (out.detach().numpy().transpose(0, 2, 1), codes.numpy(), losses.mean().item(),
            xt.grad.numpy().transpose(0, 2, 1), w.numpy().transpose(0, 2, 1))


def _run_ours(ours, x, w, n_q=K):
    def f(xj):
        out, codes, commit, ppl, buf = ours(xj, n_q, jax.random.key(0), train=True)
        return jnp.sum(out * w) + 10 * commit, (out, codes, commit, buf)
    (_, (out, codes, commit, buf)), grad = jax.jit(jax.value_and_grad(f, has_aux=True))(jnp.asarray(x))
    return np.asarray(out), np.asarray(codes), float(commit), np.asarray(grad), buf


@pytest.mark.parametrize("n_q", [K, 2])
def test_ema_step_matches_audiocraft(n_q):
    ref, ours = _ref(), _ours()
    _set_codebooks(ref, ours, seed=2)
    x = _x(3)
    r_out, r_codes, r_commit, r_grad, w = _run_ref(ref, x, n_q)
    out, codes, commit, grad, buf = _run_ours(ours, x, w, n_q)
    np.testing.assert_array_equal(codes[:, :n_q].transpose(1, 0, 2), r_codes)
    np.testing.assert_allclose(out, r_out, atol=1e-5)
    np.testing.assert_allclose(commit, r_commit, rtol=1e-5)
    np.testing.assert_allclose(grad, r_grad, atol=1e-5)  # STE (w) + commitment gradient through the residuals
    for q, layer in enumerate(ref.layers):
        cb = layer._codebook
        for name in ("embed", "cluster_size", "embed_avg"):
            want = getattr(cb, name).numpy()
            if q >= n_q:  # unused levels are not run: their buffers do not move
                assert np.allclose(np.asarray(buf[name][q]), np.asarray(getattr(ours, name)[...][q]))
            np.testing.assert_allclose(np.asarray(buf[name][q]), want, rtol=1e-5, atol=1e-5)


def test_kmeans_init_on_first_batch_matches_audiocraft(monkeypatch):
    rng = np.random.default_rng(4)
    inits = [rng.standard_normal((BINS, D)).astype(np.float32) for _ in range(K)]
    calls = {"ref": 0, "ours": 0}

    def ref_sample(samples, num):
        calls["ref"] += 1
        return torch.from_numpy(inits[calls["ref"] - 1].copy())

    def our_sample(key, samples, num):
        calls["ours"] += 1
        return jnp.asarray(inits[calls["ours"] - 1])  # one k-means init per level (no dead-code draws)

    monkeypatch.setattr(core_vq, "sample_vectors", ref_sample)
    monkeypatch.setattr(rvq_train, "sample_vectors", our_sample)
    ref, ours = _ref(threshold=0.0), _ours(threshold=0.0)
    x = _x(5)
    r_out, r_codes, r_commit, _, w = _run_ref(ref, x)
    out, codes, commit, _, buf = _run_ours(ours, x, w)
    np.testing.assert_array_equal(np.asarray(buf["inited"]), np.ones(K))
    np.testing.assert_array_equal(codes.transpose(1, 0, 2), r_codes)
    np.testing.assert_allclose(out, r_out, atol=1e-5)
    np.testing.assert_allclose(commit, r_commit, rtol=1e-4)
    for q, layer in enumerate(ref.layers):
        for name in ("embed", "cluster_size", "embed_avg"):
            np.testing.assert_allclose(np.asarray(buf[name][q]), getattr(layer._codebook, name).numpy(),
                                       rtol=1e-4, atol=1e-5)
