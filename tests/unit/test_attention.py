"""Attention implementations (magnet_jax.model.attention): dispatch and refusal per backend, and every
implementation equal to the "xla" reference path with the restricted-context band, padding and causal
masks (fp32 within 1e-5; bf16 finite and close). Splash runs in Pallas interpret mode on CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magnet_jax.model import attention as A
from magnet_jax.model.attention_masks import BandMask, band_mask, causal_mask, stage_self_attention_mask
from magnet_jax.model.config import MagnetConfig

B, T, H, D = 2, 40, 2, 16


def _qkv(T=T, Tk=None, dtype=jnp.float32, seed=0):
    Tk = T if Tk is None else Tk
    ks = jax.random.split(jax.random.key(seed), 3)
    q = jax.random.normal(ks[0], (B, T, H, D))
    k, v = (jax.random.normal(kk, (B, Tk, H, D)) for kk in ks[1:])
    return tuple(x.astype(dtype) for x in (q, k, v))


MASKS = {
    "none": lambda: None,
    "band": lambda: BandMask(None, T, 5),
    "stage0_traced": lambda: stage_self_attention_mask(T, jnp.asarray(0), 5),
    "stage2_traced": lambda: stage_self_attention_mask(T, jnp.asarray(2), 5),
    "per_sample": lambda: stage_self_attention_mask(T, jnp.asarray([0, 3]), 5),
    "causal_offset": lambda: causal_mask(T, T, 3),
}


# --------------------------------------------------------------------------- dispatch
@pytest.mark.parametrize("backend,expected", [("cpu", "xla"), ("gpu", "dot_product_attention"), ("tpu", "splash")])
def test_auto_picks_the_backends_best(backend, expected):
    assert A.resolve_impl("auto", backend) == expected


@pytest.mark.parametrize("impl", ["xla", "dot_product_attention"])
@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
def test_portable_impls_run_everywhere(impl, backend):
    assert A.resolve_impl(impl, backend) == impl


def test_splash_and_its_alias_on_tpu_only():
    assert A.resolve_impl("splash", "tpu") == A.resolve_impl("pallas", "tpu") == "splash"
    for name in ("splash", "pallas"):
        for backend in ("cpu", "gpu"):
            with pytest.raises(ValueError, match="needs a TPU") as e:
                A.resolve_impl(name, backend)
            assert "\n" not in str(e.value)


def test_unknown_impl_refused_by_config_and_dispatch():
    with pytest.raises(ValueError, match="attention_impl must be one of"):
        MagnetConfig(attention_impl="flash")
    with pytest.raises(ValueError, match="is not one of"):
        A.resolve_impl("flash", "cpu")
    with pytest.raises(ValueError, match="not resolved"):
        A.attention(*_qkv(), None, "auto")


def test_each_impl_routes_to_its_kernel(monkeypatch):
    """The dispatch calls the implementation it names (a wrong route would still give equal numbers)."""
    called = []
    for name in ("attention_xla", "attention_band", "attention_dpa", "attention_splash"):
        monkeypatch.setattr(A, name, lambda *a, _n=name, **k: called.append(_n))
    q, k, v = _qkv()
    A.attention(q, k, v, BandMask(None, T, 5), "xla")          # the band on the band only
    A.attention(q, k, v, stage_self_attention_mask(T, jnp.asarray([0, 3]), 5), "xla")   # per sample: dense
    A.attention(q, k, v, BandMask(None, T, 5), "dot_product_attention")
    A.attention(q, k, v, BandMask(None, T, 5), "splash")
    A.attention(q, k, v, causal_mask(T, T), "splash")          # a general mask: the dense path
    assert called == ["attention_band", "attention_xla", "attention_dpa", "attention_splash", "attention_xla"]


# --------------------------------------------------------------------------- masks
def test_band_mask_dense_matches_the_previous_dense_masks():
    band = np.abs(np.arange(T)[:, None] - np.arange(T)[None]) <= 5
    assert stage_self_attention_mask(T, 0, 5) is None
    np.testing.assert_array_equal(stage_self_attention_mask(T, 1, 5).dense(), band)
    np.testing.assert_array_equal(stage_self_attention_mask(T, jnp.asarray(0), 5).dense(), np.ones((T, T), bool))
    np.testing.assert_array_equal(stage_self_attention_mask(T, jnp.asarray(3), 5).dense(), band)
    per = stage_self_attention_mask(T, jnp.asarray([0, 2]), 5).dense()
    assert per.shape == (2, 1, T, T)
    np.testing.assert_array_equal(per[0, 0], np.ones((T, T), bool))
    np.testing.assert_array_equal(per[1, 0], band)


def test_band_mask_passes_through_jit_with_a_traced_stage():
    f = jax.jit(lambda s: stage_self_attention_mask(T, s, 5).dense())
    assert f(jnp.asarray(0)).all() and not f(jnp.asarray(1)).all()


@pytest.mark.parametrize("length,context", [(40, 5), (256, 5), (384, 0)])
def test_splash_local_mask_equals_the_dense_band(length, context):
    m = A.splash_mask(length, 3, context)
    assert len(m.masks) == 3
    for head in m.masks:
        np.testing.assert_array_equal(head[0:length, 0:length], np.asarray(band_mask(length, context)))
    full = A.splash_mask(length, 1, None).masks[0]
    assert full[0:length, 0:length].all()


# --------------------------------------------------------------------------- the band on the band only
@pytest.mark.parametrize("length,context,block", [(40, 5, 32), (500, 5, 32), (7, 2, 32), (33, 5, 8), (64, 40, 16),
                                                  (100, 0, 32)])
def test_band_attention_equals_the_dense_masked_softmax(length, context, block):
    """Values and gradients of :func:`attention_band` equal the dense masked softmax (the reference's
    form): lengths that are not a multiple of the block, a context wider than the block, context 0."""
    q, k, v = _qkv(T=length, seed=length)
    dense = band_mask(length, context)
    g = jax.random.normal(jax.random.key(1), q.shape)
    ref = A.attention_xla(q, k, v, dense)
    out = A.attention_band(q, k, v, context, block)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    grads = [jax.grad(lambda q, k, v, f=f: (f(q, k, v) * g).sum(), argnums=(0, 1, 2))(q, k, v)
             for f in (lambda q, k, v: A.attention_xla(q, k, v, dense),
                       lambda q, k, v: A.attention_band(q, k, v, context, block))]
    for a, b in zip(*grads):
        assert bool(jnp.isfinite(b).all())
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stage", [0, 2])
def test_traced_stage_picks_full_attention_or_the_band(stage):
    """A traced stage runs one program: stage 0 full attention, stage > 0 the band (lax.cond)."""
    q, k, v = _qkv()
    f = jax.jit(lambda q, k, v, s: A.attention(q, k, v, stage_self_attention_mask(T, s, 5), "xla"))
    ref = A.attention_xla(q, k, v, None if stage == 0 else band_mask(T, 5))
    np.testing.assert_allclose(f(q, k, v, jnp.asarray(stage)), ref, atol=1e-5, rtol=0)
    # its gradient (a custom VJP that recomputes the taken branch) equals the dense path's
    g = jax.random.normal(jax.random.key(2), q.shape)
    grad = jax.jit(jax.grad(lambda q, k, v, s: (f(q, k, v, s) * g).sum(), argnums=(0, 1, 2)))
    dense = jax.grad(lambda q, k, v: (A.attention_xla(q, k, v, None if stage == 0 else band_mask(T, 5)) * g).sum(),
                     argnums=(0, 1, 2))
    for a, b in zip(dense(q, k, v), grad(q, k, v, jnp.asarray(stage))):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- numerics vs the xla path
@pytest.mark.parametrize("mask", list(MASKS))
def test_dot_product_attention_equals_xla_fp32(mask):
    q, k, v = _qkv()
    m = MASKS[mask]()
    np.testing.assert_allclose(A.attention(q, k, v, m, "dot_product_attention"), A.attention(q, k, v, m, "xla"),
                               atol=1e-5, rtol=0)


def test_dot_product_attention_equals_xla_with_text_padding_and_an_empty_row():
    q, k, v = _qkv(Tk=8)
    valid = jnp.asarray([[1] * 5 + [0] * 3, [0] * 8], bool)          # row 1: no key at all -> zeros
    for km in (valid[:, None, None, :], (jnp.arange(8) < 6)[None, None, None, :]):
        ref = A.attention(q, k, v, km, "xla")
        out = A.attention(q, k, v, km, "dot_product_attention")
        np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    assert float(jnp.abs(A.attention(q, k, v, valid[:, None, None, :], "dot_product_attention")[1]).max()) == 0.0


@pytest.mark.parametrize("mask", ["band", "stage2_traced", "none"])
def test_dot_product_attention_bf16_finite_and_close(mask):
    q, k, v = _qkv()
    m = MASKS[mask]()
    ref = A.attention(q, k, v, m, "xla")
    out = A.attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), m, "dot_product_attention")
    assert out.dtype == jnp.bfloat16 and bool(jnp.isfinite(out).all())
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=5e-2, rtol=0)


def test_gradients_of_dot_product_attention_equal_xla():
    q, k, v = _qkv()
    m = MASKS["stage2_traced"]()
    g = [jax.grad(lambda q, k, v, i=impl: (A.attention(q, k, v, m, i) ** 2).sum(), argnums=(0, 1, 2))(q, k, v)
         for impl in ("xla", "dot_product_attention")]
    for a, b in zip(*g):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mask", ["band", "stage0_traced", "stage2_traced", "per_sample", "none"])
def test_splash_interpret_equals_xla(mask):
    """T=40 pads to one 128 block: the padded keys must stay out (segment ids)."""
    q, k, v = _qkv()
    m = MASKS[mask]()
    out = A.attention_splash(q, k, v, m, interpret=True)
    np.testing.assert_allclose(out, A.attention(q, k, v, m, "xla"), atol=1e-5, rtol=0)


def test_splash_interpret_gradients_equal_xla():
    q, k, v = _qkv()
    m = BandMask(None, T, 5)
    ref = jax.grad(lambda q, k, v: (A.attention(q, k, v, m, "xla") ** 2).sum(), argnums=(0, 1, 2))(q, k, v)
    out = jax.grad(lambda q, k, v: (A.attention_splash(q, k, v, m, interpret=True) ** 2).sum(),
                   argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(ref, out):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)



@pytest.mark.parametrize("mask_kind", ["none", "per_row", "shared", "empty_row"])
def test_cpu_batch_chunked_attention_equals_the_whole_batch(monkeypatch, mask_kind):
    """Large score tensors run a batch chunk at a time on CPU (attention_xla's lax.map, its gradient a
    per-chunk recompute): values and q / k / v gradients equal the whole-batch path."""
    Bc = 4
    ks = jax.random.split(jax.random.key(3), 4)
    q, k, v = (jax.random.normal(kk, (Bc, T, H, D)) for kk in ks[:3])
    keys = jax.random.uniform(ks[3], (Bc, 1, T, T)) > 0.3
    mask = {"none": None, "per_row": keys, "shared": keys[:1],
            "empty_row": keys.at[1, 0, 5].set(False)}[mask_kind]
    per_row = H * T * T
    monkeypatch.setattr(A, "CPU_SCORE_CHUNK", per_row // 2 + 1)  # 4 rows > 4 x the chunk: chunks of 1 row
    assert A._chunk_rows(q, k) == 1

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v)))
    chunked = lambda q, k, v: A.attention_xla(q, k, v, mask)                      # noqa: E731
    whole = lambda q, k, v: A._attention_dense(q, k, v, mask, True)               # noqa: E731
    np.testing.assert_allclose(np.asarray(jax.jit(chunked)(q, k, v)), np.asarray(whole(q, k, v)), atol=1e-6)
    g1 = jax.jit(jax.grad(loss(chunked), argnums=(0, 1, 2)))(q, k, v)
    g0 = jax.grad(loss(whole), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    if mask_kind == "empty_row":
        assert not np.asarray(jax.jit(chunked)(q, k, v))[1, 5].any()              # no allowed key: zeros
