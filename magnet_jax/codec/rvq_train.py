"""Residual VQ *training*, as audiocraft's ``ResidualVectorQuantization`` / ``EuclideanCodebook``.

EMA codebooks (``decay``, Laplace smoothing ``epsilon``), k-means initialisation on the first
training batch, dead-code replacement by random batch vectors, commitment loss, straight-through
estimator, and a traced number of active levels (quantizer / bandwidth dropout). The codebook
buffers are :class:`CodebookState` variables, never gradient-trained.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from magnet_jax.codec.quantizer import nearest_code

_HP = jax.lax.Precision.HIGHEST


class CodebookState(nnx.Variable):
    """EMA codebook buffers (``embed``, ``cluster_size``, ``embed_avg``, ``inited``); not optimised."""


@dataclasses.dataclass(frozen=True)
class RVQTrainConfig:
    """audiocraft ``rvq`` settings (config/model/encodec/default.yaml)."""
    decay: float = 0.99                 # EMA decay of cluster sizes and sums
    epsilon: float = 1e-5               # Laplace smoothing of the cluster sizes
    kmeans_init: bool = True            # k-means on the first training batch (else kaiming-uniform codebooks)
    kmeans_iters: int = 50
    threshold_ema_dead_code: float = 2.0  # codes whose EMA cluster size falls below are replaced (0: never)
    commitment_weight: float = 1.0


def sample_vectors(key, samples: jax.Array, num: int) -> jax.Array:
    """``num`` rows of ``samples [N, D]``: without replacement if ``N >= num`` (audiocraft)."""
    n = samples.shape[0]
    if n >= num:
        idx = jax.random.permutation(key, n)[:num]
    else:
        idx = jax.random.randint(key, (num,), 0, n)
    return samples[idx]


def kmeans_from(samples: jax.Array, means: jax.Array, num_iters: int):
    """Lloyd iterations from ``means [C, D]`` as audiocraft's ``kmeans`` (empty clusters keep their
    mean). Returns (means, bins): ``bins`` are the cluster sizes of the last assignment."""
    c = means.shape[0]

    def body(_, carry):
        means, _bins = carry
        buckets = nearest_code(samples, means)
        bins = jax.ops.segment_sum(jnp.ones_like(buckets, jnp.float32), buckets, c)
        sums = jax.ops.segment_sum(samples, buckets, c)
        new = sums / jnp.maximum(bins, 1.0)[:, None]
        return jnp.where((bins == 0)[:, None], means, new), bins

    return jax.lax.fori_loop(0, num_iters, body, (means, jnp.zeros((c,), jnp.float32)))


def perplexity(idx: jax.Array, bins: int) -> jax.Array:
    """``exp(entropy)`` of the code histogram of ``idx`` (1 = collapsed, ``bins`` = uniform)."""
    p = jax.ops.segment_sum(jnp.ones(idx.size, jnp.float32), idx.reshape(-1), bins) / idx.size
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def codebook_step(st: dict, x: jax.Array, key, active, cfg: RVQTrainConfig, train: bool):
    """One ``EuclideanCodebook.forward`` on ``x [N, D]`` (no gradient reaches ``st``).

    ``st``: ``embed [bins, D]``, ``cluster_size [bins]``, ``embed_avg [bins, D]``, ``inited []``.
    Returns (quantized [N, D], codes [N], new st). ``active`` (traced bool) False leaves ``st`` as is.
    """
    bins = st["embed"].shape[0]
    xs = jax.lax.stop_gradient(x)
    k_init, k_dead = jax.random.split(key)
    new = dict(st)
    if train and cfg.kmeans_init:
        def init(s):
            means, counts = kmeans_from(xs, sample_vectors(k_init, xs, bins), cfg.kmeans_iters)
            return dict(embed=means, embed_avg=means, cluster_size=counts, inited=jnp.ones_like(s["inited"]))
        new = jax.lax.cond(active & (st["inited"] == 0), init, lambda s: s, new)
    idx = nearest_code(xs, new["embed"])
    quant = jnp.take(new["embed"], idx, axis=0)
    if train:
        d = cfg.decay
        # audiocraft decides expiry on the cluster sizes before this step's EMA update
        expired = new["cluster_size"] < cfg.threshold_ema_dead_code
        cs = d * new["cluster_size"] + (1 - d) * jax.ops.segment_sum(jnp.ones(idx.shape, jnp.float32), idx, bins)
        ea = d * new["embed_avg"] + (1 - d) * jax.ops.segment_sum(xs, idx, bins)
        total = jnp.sum(cs)
        smoothed = (cs + cfg.epsilon) / (total + bins * cfg.epsilon) * total
        embed = ea / smoothed[:, None]
        if cfg.threshold_ema_dead_code > 0:
            # Dead codes take random batch vectors. audiocraft's ``replace_`` writes only ``embed``,
            # which the EMA step then overwrites with ``embed_avg / cluster_size`` (so it has no
            # effect there); here cluster size and sum are reset too (vector-quantize-pytorch), so
            # the replacement survives: embed = embed_avg / cluster_size = the sampled vector.
            sampled = sample_vectors(k_dead, xs, bins)
            cs = jnp.where(expired, cfg.threshold_ema_dead_code, cs)
            ea = jnp.where(expired[:, None], sampled * cfg.threshold_ema_dead_code, ea)
            embed = jnp.where(expired[:, None], sampled, embed)
        new = dict(new, embed=embed, cluster_size=cs, embed_avg=ea)
    new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, st)
    return quant, idx, new


class TrainableRVQ(nnx.Module):
    """``total`` EMA codebooks of ``bins`` entries of dimension ``dim`` (stacked on axis 0)."""

    def __init__(self, dim: int, bins: int, total: int, cfg: RVQTrainConfig):
        self.dim, self.bins, self.total, self.cfg = dim, bins, total, cfg
        self.embed = CodebookState(jnp.zeros((total, bins, dim), jnp.float32))
        self.cluster_size = CodebookState(jnp.zeros((total, bins), jnp.float32))
        self.embed_avg = CodebookState(jnp.zeros((total, bins, dim), jnp.float32))
        self.inited = CodebookState(jnp.zeros((total,), jnp.float32))

    def __call__(self, x: jax.Array, n_q, key, *, train: bool):
        """``x [B, T, D]``, ``n_q`` active levels (int or traced) -> (quantized [B, T, D],
        codes int32 [B, K, T], commit_loss [], perplexity [K], buffers): ``buffers`` are the updated
        ``embed / cluster_size / embed_avg / inited`` arrays (unchanged unless ``train``; levels >=
        ``n_q`` are left alone, as audiocraft never runs them). The variables are not mutated."""
        b, t, dim = x.shape
        names = ("embed", "cluster_size", "embed_avg", "inited")
        state = {k: getattr(self, k)[...] for k in names}
        new_state = {k: [] for k in names}
        residual = x.reshape(b * t, dim)
        qsum = jnp.zeros_like(residual)
        codes, losses, ppl = [], [], []
        n_q = jnp.asarray(n_q, jnp.int32)
        for q in range(self.total):
            active = q < n_q
            st = {k: v[q] for k, v in state.items()}
            quant, idx, st = codebook_step(st, residual, jax.random.fold_in(key, q), active, self.cfg, train)
            for k in names:
                new_state[k].append(st[k])
            quant = jax.lax.stop_gradient(jnp.where(active, quant, 0.0))
            # commitment: mse(quantized.detach(), residual), gradient to the encoder through the residual
            losses.append(self.cfg.commitment_weight * jnp.mean(jnp.square(quant - residual)))
            residual = residual - quant
            qsum = qsum + quant
            codes.append(idx.reshape(b, t))
            ppl.append(jnp.where(active, perplexity(idx, self.bins), 0.0))
        x2 = x.reshape(b * t, dim)
        out = x2 + jax.lax.stop_gradient(qsum - x2)  # straight-through (a no-op on the forward value)
        active = jnp.arange(self.total) < n_q
        # ResidualVectorQuantizer: penalty = mean over the n_q used levels; zero outside training
        commit = jnp.sum(jnp.stack(losses) * active) / n_q if train else jnp.zeros((), jnp.float32)
        buffers = {k: jnp.stack(v) for k, v in new_state.items()} if train else state
        return out.reshape(b, t, dim), jnp.stack(codes, axis=1).astype(jnp.int32), commit, jnp.stack(ppl), buffers
